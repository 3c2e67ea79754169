"""The safety layer every interface goes through: crisis recognition, the output guard, safe checkpoint paths.

    reply = safe_reply(history, prompt, lambda: responder.respond(history, prompt, decoding))
    directory = check_checkpoint_dir(path_from_the_ui, allowed_roots)
"""

from core.safe_files import CheckpointError, check_checkpoint_dir, safe_path, write_checksums
from core.safety.crisis import CRISIS_REPLY, CrisisAssessment, assess
from core.safety.guard import (NOTICE, GuardResult, SafeReply, guard, guard_counts, reset_guard_counts, safe_reply,
                               safe_stream)

__all__ = [
    "CRISIS_REPLY", "NOTICE", "CheckpointError", "CrisisAssessment", "GuardResult", "SafeReply", "assess",
    "check_checkpoint_dir", "guard", "guard_counts", "reset_guard_counts", "safe_path", "safe_reply", "safe_stream",
    "write_checksums",
]
