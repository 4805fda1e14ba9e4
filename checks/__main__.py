"""``python -m checks`` is ``dra-lab``."""

from checks.cli import main

main()
