"""The notebooks here are fixtures of the report tests (some fail or hang on purpose):
never collect them as tests, e.g. under ``pytest --nbmake``."""

collect_ignore_glob = ["*.ipynb", "make_fixtures.py"]
