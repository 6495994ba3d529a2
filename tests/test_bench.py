"""The benchmark's `--clean`: it deletes what invocations left, and nothing else."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "backfill.py"


def test_clean_deletes_the_outputs_and_keeps_the_store(tmp_path):
    work = tmp_path / "sf0.5"
    outputs = [work / "dagster_home_ab", work / "run-1", work / "maildir-2"]
    for output in outputs:
        (output / "inner").mkdir(parents=True)
        (output / "inner" / "file").write_text("x")
    kept = [work / "data" / "landing", work / "plain.duckdb"]
    kept[0].mkdir(parents=True)
    kept[1].write_text("db")

    done = subprocess.run(
        [sys.executable, str(BENCH), "--scale", "0.5", "--work-dir", str(tmp_path), "--clean"],
        check=True,
        capture_output=True,
        text=True,
    )

    assert f"deleted 3 outputs under {work}" in done.stdout
    assert not any(output.exists() for output in outputs)
    assert all(path.exists() for path in kept)
