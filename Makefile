# Short commands for the usual chores (the README gives the full ones).
.PHONY: test lint format tiny app bench

test:
	python -m pytest

lint:
	ruff check . && ruff format --check .

format:
	ruff format . && ruff check --fix .

tiny:
	python -m aqa tiny tiny-model

app: tiny
	python app.py --model tiny-model

bench: tiny
	python -m aqa bench --model tiny-model --max-new-tokens 10
