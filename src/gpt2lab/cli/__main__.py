"""``python -m gpt2lab.cli``: the ``gpt2lab`` command, as torchrun starts it
(``torchrun ... -m gpt2lab.cli train``)."""

import sys

from gpt2lab.cli import main

sys.exit(main())
