"""The sandbox: the one place model-written programs are executed (see `sandbox.py`)."""

from tts.sandbox.sandbox import ExecResult, Limits, Sandbox, SandboxError, default_sandbox

__all__ = ["ExecResult", "Limits", "Sandbox", "SandboxError", "default_sandbox"]
