#!/usr/bin/env python3
"""test_smtpd_kill.py with the store's regions in files ([store] regions =
files): SIGKILLed workers, recovery and the restarted workers rejoining
lose nothing that got 250."""
import os
import runpy

os.environ["GOVMAIL_TEST_REGIONS"] = "files"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "test_smtpd_kill.py"), run_name="__main__")
