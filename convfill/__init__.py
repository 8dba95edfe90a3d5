"""ConvFill: a fast local Talker speaks while a Reasoner streams knowledge (conversational infill).

`MIN_PYTHON` is the one statement of the Python the code needs; `pyproject.toml` (`requires-python`) and
the Space front matter in README.md (`python_version`) must agree with it (a test checks).
"""

MIN_PYTHON = (3, 11)  # `except*` (engine) and asyncio.TaskGroup
