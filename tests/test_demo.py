"""The README's first command keeps working: ``scripts/demo --cdm`` (the plain demo runs the
same code on a generated CSV; ``.ci/run`` does not run it, to keep CI short)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_exports_the_sample_cdm_folders_newest_run(tmp_path: Path) -> None:
    """It leaves nothing in the temp folder: its report, rejects and snapshot go to .demo/."""
    result = subprocess.run([sys.executable, "-m", "devtools.demo", "--cdm"], capture_output=True, text=True,
                            cwd=ROOT, timeout=180, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []
    assert (ROOT / ".demo" / "report.json").is_file()
    assert "Klaviyo list DemoVIP now has 43 members." in result.stdout
    assert "partial: 45 rows read, 43 sent, 2 rejected, 0 duplicates, 1 Klaviyo job" in result.stderr
