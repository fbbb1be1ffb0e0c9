import sys

from mongeflow.cli import main

sys.exit(main())
