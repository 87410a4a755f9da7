module smokeapp

go 1.22
