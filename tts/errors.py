"""The one error type a user can cause, and the budget signal strategies catch."""


class TTSError(Exception):
    """A mistake the user can fix (bad input, unknown name, missing model, server down).

    The message says what went wrong and what to do; the CLI prints it as one line.
    """


class ParameterError(TTSError, ValueError):
    """A parameter outside what its declaration allows (a strategy's `n` below 1, a choice not
    among its literals): the one message shape of every parameter check, a ValueError too."""


class BudgetExceeded(TTSError):
    """The accountant refused a call because it could take the run over its budget.

    Strategies catch it and return their best answer so far with `stopped_by="budget"`.
    """

    def __init__(self, cap: str, detail: str = ""):
        self.cap = cap
        super().__init__(f"budget cap '{cap}' would be exceeded{': ' + detail if detail else ''}")


class BackendError(TTSError):
    """A backend failed to answer a request (a truncated stream, an empty or malformed response,
    a server that stops answering) after its retries.

    Never turned into a finished record: the problem is recorded as failed, with this message,
    so a resume retries it.
    """
