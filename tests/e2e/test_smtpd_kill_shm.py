#!/usr/bin/env python3
"""test_smtpd_kill.py with the store's regions in System V shared memory
([store] shm_key): SIGKILLed workers, recovery and the restarted workers
reattaching to the segments lose nothing that got 250."""
import os
import runpy

os.environ["GOVMAIL_TEST_SHM"] = "1"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "test_smtpd_kill.py"), run_name="__main__")
