# The two things a person does with this repository, and a few more.
.PHONY: help lab lab-down test test-fast render diagnose bootstrap

help:
	@echo "make lab        bring up the lab: kind cluster, images, Secrets, Backstage on http://localhost:7007"
	@echo "make test       run every test tier (unit, render, images, kind, e2e)"
	@echo "make lab-down   stop the port-forward and delete the lab cluster"
	@echo "make test-fast  unit and render tiers only (no Docker, about a minute)"
	@echo "make render     render and check the overlays only"
	@echo "make diagnose   the guide's troubleshooting on the lab (or \$$KUBECONFIG), with likely causes"
	@echo "make bootstrap  install the pinned tools into .tools/"

lab:
	scripts/lab-up.sh

lab-down:
	scripts/lab-down.sh

test:
	scripts/test.sh

test-fast:
	scripts/test.sh --fast

# The lab's cluster (unless KUBECONFIG points elsewhere), with the toolchain's kubectl.
diagnose:
	@eval "$$(scripts/kind/toolchain.sh env 2>/dev/null)"; \
	kc="$${KUBECONFIG:-$$(scripts/kind/cluster.sh kubeconfig backstage-lab)}"; \
	[ -n "$$KUBECONFIG" ] || [ -f "$$kc" ] || \
	  { echo "no lab cluster ($$kc is missing): run make lab, or set KUBECONFIG" >&2; exit 2; }; \
	KUBECONFIG="$$kc" scripts/diagnose.py --kubectl "$${KUBECTL:-kubectl}"

render:
	scripts/test.sh --fast -m render

bootstrap:
	scripts/bootstrap.sh
