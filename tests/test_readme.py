"""The README's worked engine loop runs as written."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_engine_loop_runs(capsys):
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    loop = [b for b in blocks if "verify_step" in b and "import mamba_kernels" in b]
    assert loop, "README lost its worked verify_step loop"
    exec(compile(loop[0], "README.md", "exec"), {})
    assert "committed states: (2, 4, 16, 8)" in capsys.readouterr().out


def test_readme_commands_exist():
    text = open(os.path.join(ROOT, "README.md")).read()
    assert "bash scripts/install.sh && python -m mamba_kernels.demo" in text
    test_cmd = "python -m pytest -q -n 2 --dist loadfile"  # CI runs the README's test command
    assert test_cmd in text
    assert open(os.path.join(ROOT, ".ci", "run")).read().count(test_cmd) == 1


def test_demo_runs_and_agrees():
    """The README's first command ends in `python -m mamba_kernels.demo`: every available backend of every
    family agrees with its reference."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "mamba_kernels.demo"], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "all backends agree with the references" in res.stdout
