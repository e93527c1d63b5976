"""The jinja2 sandbox that profile templates run in, with limits.

An operator's template must not be able to hurt the service: `{{ 9**(9**9) }}` would
keep a worker busy for hours and `{{ 'a' * 100000000 }}` would render 100 MB. So:

- arithmetic is checked before it runs: `**` and `*` whose result would be larger than
  MAX_BITS (numbers) or MAX_OUTPUT characters (strings, lists), `%` formatting, and
  every call and filter with a number argument larger than MAX_OUTPUT, or whose result
  is larger;
- `range()` hands out at most MAX_ITEMS items per render, and a namespace attribute
  cannot hold more than MAX_OUTPUT characters;
- the output stops at MAX_OUTPUT characters, and a render stops after MAX_SECONDS
  (checked on every line of the compiled template, so a loop without output stops too).

Breaking a limit raises TemplateLimitError: a 400 when a template is saved (saving
tries the template once with a sample node), a 500 naming the limit when it is rendered.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace

MAX_OUTPUT = 4 * 1024 * 1024  # characters in one rendered template
MAX_BITS = 64 * 1024  # bits in one number
MAX_ITEMS = 200_000  # items range() hands out in one render
MAX_SECONDS = 2.0  # one render
_TEMPLATE_FILE = "<template>"  # what jinja2 names the code compiled from a string


class TemplateLimitError(jinja2.TemplateRuntimeError):
    """A template went past one of the limits above."""


class _Budget:
    """The limits of the render running in this thread."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.items = MAX_ITEMS

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"rendering took longer than {MAX_SECONDS:g} s")


_budgets: dict[int, _Budget] = {}


def _budget() -> _Budget | None:
    return _budgets.get(threading.get_ident())


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, list, tuple, dict)):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 8
    return 0


def _check_result(value: Any, what: str) -> Any:
    if _size(value) > MAX_OUTPUT:
        raise TemplateLimitError(f"{what} would make a value larger than {MAX_OUTPUT} characters")
    return value


def _check_args(args: tuple, kwargs: dict, what: str) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT:
            raise TemplateLimitError(f"{what}: the number {value if value.bit_length() < 64 else 'given'} is larger"
                                     f" than {MAX_OUTPUT}, the most a template may ask for")


def _guarded(function: Callable, name: str) -> Callable:
    """A filter, test or global that refuses huge number arguments and huge results."""

    @functools.wraps(function)  # keeps jinja2's pass_context / pass_environment marks
    def run(*args, **kwargs):
        _check_args(args, kwargs, name)
        return _check_result(function(*args, **kwargs), name)

    return run


class _LimitedNamespace(Namespace):
    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, _check_result(value, f"namespace attribute {name!r}"))


def _range(*args: int) -> range:
    _check_args(args, {}, "range")
    items = range(*args)
    budget = _budget()
    if budget is not None:
        budget.items -= len(items)
        if budget.items < 0:
            raise TemplateLimitError(f"range() handed out more than {MAX_ITEMS} items in one render")
    return items


class LimitedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.filters = {name: _guarded(f, f"filter {name}") for name, f in self.filters.items()}
        self.globals.update(range=_range, namespace=_LimitedNamespace)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        numbers = all(isinstance(v, (int, float)) for v in (left, right))
        if operator == "**" and numbers and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_BITS:
                raise TemplateLimitError(f"{left} ** {right} would be a number of more than {MAX_BITS} bits")
        elif operator == "*" and numbers and isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_BITS:
                raise TemplateLimitError(f"the product would be a number of more than {MAX_BITS} bits")
        elif operator == "*":  # a sequence repeated
            count = left if isinstance(left, int) else right if isinstance(right, int) else 0
            if abs(count) * max(_size(left), _size(right), 1) > MAX_OUTPUT:
                raise TemplateLimitError(f"repeating a value {count} times would exceed {MAX_OUTPUT} characters")
        elif operator == "%" and isinstance(left, str):
            _check_args(right if isinstance(right, tuple) else (right,), {}, "% formatting")
        result = super().call_binop(context, operator, left, right)
        return _check_result(result, f"'{operator}'")

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_args(args, kwargs, getattr(__obj, "__name__", "a call"))
        budget = _budget()
        if budget is not None:
            budget.check_time()
        result = super().call(__context, __obj, *args, **kwargs)
        return _check_result(result, getattr(__obj, "__name__", "a call"))


def has_loops(env: jinja2.Environment, source: str) -> bool:
    """Whether a template has a `for` loop: only those can run long without calling anything
    (everything else is bounded by the template's size and the checks above)."""
    return any(True for _ in env.parse(source).find_all(jinja2.nodes.For))


def render_limited(template: jinja2.Template, context: dict, seconds: float = MAX_SECONDS,
                   loops: bool = True) -> str:
    """Render `template` within the limits; TemplateLimitError when it goes past one. The time
    limit is checked on every line of the compiled template when it has `loops`, else between
    calls and output chunks (tracing costs about 0.2 ms a render)."""
    ident = threading.get_ident()
    budget = _budgets[ident] = _Budget(seconds)
    if not loops:
        try:
            return "".join(_bounded(template.generate(context), budget))
        finally:
            _budgets.pop(ident, None)
    previous = sys.gettrace()

    def line_check(frame, event, arg):
        budget.check_time()
        return line_check

    def tracer(frame, event, arg):  # only the template's own code is traced line by line
        if frame.f_code.co_filename == _TEMPLATE_FILE:
            budget.check_time()
            return line_check
        return None

    sys.settrace(tracer)
    try:
        return "".join(_bounded(template.generate(context), budget))
    finally:
        sys.settrace(previous)
        _budgets.pop(ident, None)


def _bounded(chunks: Iterator[str], budget: _Budget) -> Iterator[str]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > MAX_OUTPUT:
            raise TemplateLimitError(f"the output is larger than {MAX_OUTPUT} characters")
        budget.check_time()
        yield chunk
