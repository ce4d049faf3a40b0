"""Entry point of the frozen application (the bundle has no console-script shim)."""

import multiprocessing
import sys

if __name__ == "__main__":
    # A frozen executable re-runs itself for spawned child processes; without this they
    # would start a second editor instead of the child's work.
    multiprocessing.freeze_support()
    from styleclip_desktop.cli import main

    sys.exit(main())
