# The two commands of the README. Both set up (or bring up to date) the environment first.
.PHONY: run test setup

run: ## set up, then run web + workers + beat + embedded Redis (Ctrl-C stops everything)
	scripts/setup.sh
	.venv/bin/python -m project.up

test: ## set up (with Chromium), then every check CI runs
	scripts/setup.sh --test
	scripts/test.sh

setup: ## only the set-up step
	scripts/setup.sh
