"""The training-speed report (thesis 3.3.6: early stopping, dilation) was removed
(issue #23: reporting/ at most 15% of the package); this module only says so to
those who call it, and how to make the report from the last version that has it."""
import sys

LAST_COMMIT = "85a7047"
MESSAGE = ("the training-speed report (early stopping, dilation) was removed in issue #23; "
           f"make it with tflottery {LAST_COMMIT}: git worktree add /tmp/tflottery-speed "
           f"{LAST_COMMIT} && PYTHONPATH=/tmp/tflottery-speed python -m "
           "tflottery.reporting.speed ROOT")

if __name__ == "__main__":
    sys.exit(f"error: {MESSAGE}")
