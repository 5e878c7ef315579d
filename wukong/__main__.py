"""``python -m wukong`` is the ``wukong`` command."""

from wukong.cli import main

raise SystemExit(main())
