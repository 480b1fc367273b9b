"""Progress bars on stderr: tqdm, silenced by TQDM_DISABLE=1 or by a library caller's progress=False."""


def bar_options(progress: bool) -> dict:
    """tqdm keywords: no bar when progress is off; otherwise tqdm's defaults, so that TQDM_DISABLE=1
    silences it (an explicit disable=False would override the environment)."""
    return {} if progress else {"disable": True}
