"""Every shell and Python code block of README.md and docs/*.md runs here, on the tiny model: a broken snippet fails.

How the blocks are run (read this before writing a page):

- A fence tagged `bash`, `sh` or `shell` runs with `bash -euo pipefail`; one tagged `python` runs in one Python
  namespace per page (a later block sees an earlier one's names). Any other tag (`text`, `json`, `yaml`, ...) is
  not code and is not run: use `text` for a synopsis with placeholders.
- A page's blocks run in the page's order, in one scratch folder per page that links every top-level entry of the
  repository (assets/, train/, app.py, ...): write paths as from the repository's root. What a block writes
  (tiny-model/, data/, runs/) stays in the scratch folder for the page's later blocks. A block depends on the ones
  before it, so select a whole page (`pytest tests/test_docs.py -k evaluation.md`), not one block.
- `python` and `aqa` are this checkout's (PATH starts with this interpreter's folder, PYTHONPATH is the repository),
  and HF_HUB_OFFLINE=1: nothing is downloaded.
- A block that cannot run on a CPU machine without network says why in an HTML comment on the line before its fence,
  `<!-- docs-test: skip REASON -->`, REASON one of SKIP_REASONS: it is reported as skipped, the reason in its test
  id (`README.md:52-skip-network`) and message. Mark only what truly needs it; everything else must run.
- `<!-- docs-test: app -->` before a block that starts the app: the block runs in the background with
  GRADIO_SERVER_PORT set to a free port, the test passes once the page answers there, and the app keeps serving the
  page's later blocks (APP_URL in them becomes its address) until the page's last block has run.
- Declared substitutions, the only changes made to a block's text (SUBSTITUTIONS: what, into what, why): a Hub model
  id becomes the tiny checkpoint, `aqa tiny DIR` copies the session's tiny checkpoint, `aqa bench` and
  `bench.grpo_step` get small counts, `/tmp/` becomes the scratch folder's tmp/.
- Declared data (FIXTURES): before a page's first block, the question files and clips its blocks read are written at
  the paths the page names (made-up records and generated clips), and checkpoints it sweeps are copies of the tiny
  one. The real benchmarks are not needed and not read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT
from test_eval import mmar_record
from test_mmau import made_up_records, synthesise

from bench.serving import free_port, wait_until_up

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}
SKIP_REASONS = {
    "gpu": "needs a CUDA GPU",
    "hub": "downloads a model from the Hugging Face Hub",
    "network": "downloads something else (packages, a repository, a dataset)",
    "suite": "runs the test suite itself",
}
MARK = re.compile(r"<!--\s*docs-test:\s*(.+?)\s*-->")
APP_URL = "http://127.0.0.1:7860/"  # where a page's API examples reach the app; the started app's address here
BLOCK_SECONDS = 600

# (pattern, replacement, why): applied, in order, to every block that runs. {tiny} is the session's tiny checkpoint,
# {scratch} the page's scratch folder (first: the paths put in by the others are under /tmp themselves). Nothing else
# in a block's text is changed.
SUBSTITUTIONS = [
    (r"(?<![\w.])/tmp/", "{scratch}/tmp/", "the scratch folder instead of the machine's /tmp"),
    (r"\bmispeech/r1-aqa\b", "{tiny}", "R1-AQA itself is a 17 GB download: the tiny checkpoint stands in"),
    (r"\bQwen/Qwen2-Audio-7B-Instruct\b", "{tiny}", "so is its base model"),
    (
        r"(?:python -m )?\baqa tiny (\S+)(?=[ \t]*(?:$|&&|;|\||#))",
        r"cp -rT {tiny} \1",
        "the session's tiny checkpoint is what `aqa tiny DIR` writes (tests/test_cli.py runs the command itself); "
        "other families (--family) are built as written",
    ),
    (
        r"(python -m aqa|\baqa) bench\b",
        r"\1 bench --clips 1 --batch-sizes 1 --latency-runs 1 --baseline-runs 0 --decode-tokens 0 --think-tokens 0",
        "the measured counts take minutes; the figures are not checked here",
    ),
    (r"python -m bench\.grpo_step\b", "python -m bench.grpo_step --steps 1", "one step shows the recipe runs"),
]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence
    language: str
    code: str
    mark: str | None  # the docs-test comment before it: "skip REASON", "app" or None

    @property
    def id(self) -> str:
        mark = f"-{self.mark.replace(' ', '-')}" if self.mark else ""
        return f"{self.page.relative_to(ROOT)}:{self.line}{mark}"


def read_blocks(page: Path) -> list[Block]:
    """The page's fenced code blocks that are code (RUN's languages), each with the mark on the line before it."""
    blocks, lines = [], page.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        opening = re.match(r"^```(\w*)\s*$", lines[number])
        if not opening:
            number += 1
            continue
        end = next(i for i in range(number + 1, len(lines)) if lines[i].startswith("```"))
        before = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        mark = MARK.search(before)
        if opening.group(1) in RUN:
            code = "\n".join(lines[number + 1 : end]) + "\n"
            blocks.append(Block(page, number + 1, opening.group(1), code, mark.group(1) if mark else None))
        number = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in read_blocks(page)]


def substitute(code: str, tiny: Path, scratch: Path) -> str:
    for pattern, replacement, _ in SUBSTITUTIONS:
        code = re.sub(pattern, replacement.format(tiny=tiny, scratch=scratch), code, flags=re.MULTILINE)
    return code


# --- data the pages read -------------------------------------------------------------------------------------------


def mmau_file(scratch: Path, version: str) -> None:
    """Made-up MMAU records and their clips where the page reads MMAU (data/mmau-test-mini.VERSION.json, data/MMAU)."""
    records = made_up_records(4)
    (scratch / "data").mkdir(exist_ok=True)
    (scratch / "data" / f"mmau-test-mini.{version}.json").write_text(json.dumps(records))
    synthesise(scratch / "data" / "MMAU", records)


def evaluation_data(scratch: Path, tiny: Path) -> None:
    mmau_file(scratch, "2025-03-25")
    mmar = [mmar_record(number, "sound", "Signal Layer", "Counting") for number in range(3)]
    (scratch / "data" / "MMAR").mkdir(parents=True)
    (scratch / "data" / "MMAR" / "MMAR-meta.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mmar))
    synthesise(scratch / "data" / "MMAR", [{"audio_id": record["audio_path"]} for record in mmar])
    dev = [
        {
            "uid": f"d{n}",
            "wav": f"d{n}.wav",
            "question": "Who speaks?",
            "choices": ["A man", "A woman"],
            "gold": "A man",
        }
        | {"speaker": "adult" if n % 2 else "child"}
        for n in range(3)
    ]
    (scratch / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in dev))
    synthesise(scratch / "dev", [{"audio_id": row["wav"]} for row in dev])
    for step in (100, 200):  # what a training run's output folder holds, for the sweeps
        shutil.copytree(tiny, scratch / "runs" / "grpo" / f"checkpoint-{step}")


# page -> (what it writes, why)
FIXTURES = {
    "docs/evaluation.md": (
        evaluation_data,
        "MMAU (2025-03-25 name), MMAR and a dev set of made-up records with generated clips; checkpoints to sweep",
    ),
    "docs/reproducing.md": (
        lambda scratch, tiny: mmau_file(scratch, "2025-01-28"),
        "made-up records under the 2025-01-28 file's name, with generated clips",
    ),
}


# --- running a page ------------------------------------------------------------------------------------------------


@dataclass
class PageRun:
    """One page's scratch folder, Python namespace and app, shared by its blocks."""

    scratch: Path
    namespace: dict = field(default_factory=lambda: {"__name__": "__docs__"})
    app: subprocess.Popen | None = None
    app_url: str | None = None
    failed: str | None = None  # the first block that failed: the later ones are skipped, not run on a broken state

    def stop_app(self) -> None:
        if self.app is not None and self.app.poll() is None:
            os.killpg(self.app.pid, signal.SIGTERM)  # bash and the app under it
            self.app.wait(timeout=30)


@pytest.fixture(scope="module")
def pages(tmp_path_factory, tiny_model_dir):
    runs: dict[Path, PageRun] = {}

    def get(page: Path) -> PageRun:
        if page not in runs:
            scratch = tmp_path_factory.mktemp(page.stem.lower())
            for entry in ROOT.iterdir():
                if not entry.name.startswith(".") and entry.name not in ("tiny-model", "data", "runs"):
                    (scratch / entry.name).symlink_to(entry)
            (scratch / "tmp").mkdir()
            fixture = FIXTURES.get(str(page.relative_to(ROOT)))
            if fixture:
                fixture[0](scratch, tiny_model_dir)
            runs[page] = PageRun(scratch)
        return runs[page]

    yield get
    for run in runs.values():
        run.stop_app()


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(ROOT)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def start_app(code: str, run: PageRun) -> None:
    port = free_port()
    log = run.scratch / f"app-{port}.log"
    with log.open("w") as output:
        run.app = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=run.scratch,
            env=environment() | {"GRADIO_SERVER_PORT": str(port)},
            stdout=output,
            stderr=output,
            start_new_session=True,  # its own process group: stopping it stops the app under bash too
        )
    run.app_url = f"http://127.0.0.1:{port}/"
    wait_until_up(run.app_url, run.app, log)


def run_block(block: Block, code: str, run: PageRun, monkeypatch) -> None:
    if block.mark == "app":
        start_app(code, run)
        return
    if block.language == "python":
        monkeypatch.chdir(run.scratch)
        exec(compile(code, block.id, "exec"), run.namespace)
        return
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=run.scratch,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=BLOCK_SECONDS,
    )
    assert done.returncode == 0, (
        f"{block.id} failed ({done.returncode}):\n{code}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_doc_block(block, pages, tiny_model_dir, monkeypatch):
    if block.mark and block.mark.startswith("skip"):
        reason = block.mark.removeprefix("skip").strip()
        pytest.skip(f"docs-test: skip {reason}: {SKIP_REASONS[reason]}")
    run = pages(block.page)
    if run.failed:
        pytest.skip(f"an earlier block of the page failed: {run.failed}")
    code = substitute(block.code, tiny_model_dir, run.scratch)
    if run.app_url:
        code = code.replace(APP_URL, run.app_url)
    try:
        run_block(block, code, run, monkeypatch)
    except BaseException:
        run.failed = block.id
        raise


# --- the convention itself -----------------------------------------------------------------------------------------


def test_every_mark_is_known_and_stands_before_a_block():
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            mark = MARK.search(line)
            if not mark:
                continue
            kind = mark.group(1)
            known = kind == "app" or (kind.startswith("skip ") and kind.removeprefix("skip ") in SKIP_REASONS)
            assert known, (
                f"{page.name}:{number + 1}: unknown mark {kind!r} (known: app, skip {', skip '.join(SKIP_REASONS)})"
            )
            following = next((text for text in lines[number + 1 :] if text.strip()), "")
            assert following.startswith("```"), f"{page.name}:{number + 1}: the mark must stand right before a fence"


def test_every_page_has_blocks_that_run():
    """A page whose every block is skipped tests nothing: each page with code runs some of it."""
    for page in PAGES:
        blocks = [block for block in BLOCKS if block.page == page]
        if blocks:
            assert any(not (block.mark or "").startswith("skip") for block in blocks), page.name


def test_the_docs_link_only_to_files_that_exist():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) + re.findall(r'src="([^"]+)"', text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


def test_the_training_examples_make_optimizer_steps(pages):
    """A run that makes no step still saves a model and exits 0, so a passing block is not enough: the examples'
    checkpoints must record the recipe's steps (grpo_tiny.yaml: 2), the two-process one included."""
    scratch = pages(ROOT / "docs" / "training.md").scratch
    if not (scratch / "runs").is_dir():
        pytest.skip("docs/training.md's blocks did not run in this session (select the whole file)")
    for run in ("grpo-tiny", "grpo-tiny-2proc", "sft-tiny"):
        states = sorted((scratch / "runs" / run).glob("checkpoint-*/trainer_state.json"))
        assert states, f"runs/{run} saved no checkpoint"
        assert json.loads(states[-1].read_text())["global_step"] == 2, run
