// Command smokeapp is the one program of the kind smoke tests' image (tests/kind/test_smoke.py):
// built from this folder with CGO_ENABLED=0, packed alone into an image and loaded with
// `kind load docker-image`.
//
//	smokeapp serve ADDR          answer every HTTP request with "hello from HOSTNAME"
//	smokeapp get URL [SECONDS]   print the body of URL (retrying for SECONDS, default 30); exit 1 on failure
//	smokeapp resolve NAME        print the addresses NAME resolves to (retrying for 30 s)
//	smokeapp write FILE TEXT     write TEXT to FILE
//	smokeapp read FILE           print FILE
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func retry(what string, window time.Duration, f func() (string, error)) {
	deadline := time.Now().Add(window)
	for {
		out, err := f()
		if err == nil {
			fmt.Println(out)
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
			os.Exit(1)
		}
		time.Sleep(time.Second)
	}
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: smokeapp serve ADDR | get URL | resolve NAME | write FILE TEXT | read FILE")
		os.Exit(2)
	}
	arg := os.Args[2]
	switch os.Args[1] {
	case "serve":
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "hello from %s\n", host)
		})
		if err := http.ListenAndServe(arg, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "get":
		window := 30 * time.Second
		if len(os.Args) > 3 {
			seconds, err := strconv.Atoi(os.Args[3])
			if err != nil {
				fmt.Fprintln(os.Stderr, "get: SECONDS must be a whole number")
				os.Exit(2)
			}
			window = time.Duration(seconds) * time.Second
		}
		client := http.Client{Timeout: 3 * time.Second}
		retry("get "+arg, window, func() (string, error) {
			resp, err := client.Get(arg)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
			return strings.TrimSpace(string(body)), err
		})
	case "resolve":
		retry("resolve "+arg, 30*time.Second, func() (string, error) {
			addrs, err := net.LookupHost(arg)
			return strings.Join(addrs, " "), err
		})
	case "write":
		if len(os.Args) < 4 {
			os.Exit(2)
		}
		if err := os.WriteFile(arg, []byte(os.Args[3]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "read":
		data, err := os.ReadFile(arg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(string(data))
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
