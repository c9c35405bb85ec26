"""Keep Hypothesis's files (its constants cache) inside tests/fuzz rather than at the
repository root, and make the helper modules here importable however pytest is run."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

try:
    from hypothesis.configuration import set_hypothesis_home_dir
except ImportError:  # test_fuzz.py skips itself without hypothesis; the rest needs none
    pass
else:
    set_hypothesis_home_dir(str(HERE / ".hypothesis"))
