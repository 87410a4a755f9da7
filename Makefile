# The two things a person does with this repository, and a few more.
.PHONY: help lab test render bootstrap

help:
	@echo "make lab        bring up the lab: kind cluster, images, Secrets, Backstage on http://localhost:7007"
	@echo "make test       run every test tier (unit, render, images, kind, e2e)"
	@echo "make render     render and check the overlays only (fast)"
	@echo "make bootstrap  install the pinned tools into .tools/"

lab:
	scripts/lab-up.sh

test:
	scripts/test.sh

render:
	scripts/test.sh -m render

bootstrap:
	scripts/bootstrap.sh
