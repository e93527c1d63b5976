"""The jinja2 sandbox that profile templates run in, with limits.

An operator's template must not be able to hurt the service: `{{ 9**(9**9) }}` would
keep a worker busy for hours and `{{ 'a' * 100000000 }}` would render 100 MB. So:

- arithmetic is checked before it runs: `**` and `*` whose result would be larger than
  MAX_BITS (numbers) or MAX_OUTPUT characters (strings, lists), `%` formatting, and
  every call and filter with a number argument larger than MAX_OUTPUT, or whose result
  is larger;
- `range()` hands out at most MAX_ITEMS items per render, and a namespace attribute
  cannot hold more than MAX_OUTPUT characters;
- nothing is allocated past MAX_OUTPUT: what a string method or filter would make is
  reckoned from its input before it runs (`expandtabs`, `replace`, `join`, `indent`,
  `wordwrap`, `+`, `~`), `sum` adds numbers only, and a format string (`str.format`, `%`, `| format`) may not ask for
  widths and precisions adding up to more (nor take one from an argument);
- the output stops at MAX_OUTPUT characters, and a render stops after MAX_SECONDS
  (checked on every line of the compiled template, so a loop without output stops too,
  and, through a profile hook, on every call inside a filter or method while it runs, so a
  filter that is slow on a large input, `wordwrap(1)`, stops too).

Breaking a limit raises TemplateLimitError: a 400 when a template is saved (saving
tries the template once with a sample node), a 500 naming the limit when it is rendered.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jinja2
from jinja2.compiler import CodeGenerator, Frame
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


def _watched(function: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call `function` with the render's time limit checked on every call it makes (a profile
    hook, only while it runs): a filter or method that is slow on its input stops on time."""
    budget = _budget()
    if budget is None:
        return function(*args, **kwargs)
    previous = sys.getprofile()

    def hook(frame, event, arg):
        budget.check_time()

    sys.setprofile(hook)
    try:
        return function(*args, **kwargs)
    finally:
        sys.setprofile(previous)


def _refuse_past(size: int, what: str) -> None:
    if size > MAX_OUTPUT:
        raise TemplateLimitError(f"{what} would make a value larger than {MAX_OUTPUT} characters")


_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_format(text: Any, what: str, style: str = "%") -> None:
    """A format string (`%` style, or `{}` for str.format) asking for widths and precisions that
    add up to more than MAX_OUTPUT, or taking one from an argument (`*`, `{:{w}}`), is refused
    before it allocates anything."""
    if not isinstance(text, str):
        return
    total = 0
    if style == "%":
        for width, precision in _PERCENT.findall(text):
            if "*" in (width, precision):
                raise TemplateLimitError(f"{what}: a width or precision from an argument (*) is not allowed")
            total += int(width or 0) + int(precision or 0)
    else:
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError as e:
            raise TemplateLimitError(f"{what}: {e}") from None
        for _, _, spec, _ in fields:
            if spec and "{" in spec:
                raise TemplateLimitError(f"{what}: a width or precision from an argument ({{}} in a format spec)"
                                         " is not allowed")
            total += sum(int(n) for n in re.findall(r"\d+", spec or ""))
    if total > MAX_OUTPUT:
        raise TemplateLimitError(f"{what}: the format asks for widths of {total} characters, larger than the {MAX_OUTPUT} a value may hold")


def _occurrences(text: str, old: str, count: Any) -> int:
    found = len(text) + 1 if old == "" else text.count(old)
    return min(found, count) if isinstance(count, int) and count >= 0 else found


def _joined(items: list, separator: str) -> int:
    return sum(len(x) if isinstance(x, str) else _size(x) for x in items) + len(separator) * max(len(items) - 1, 0)


def _indent_width(width: Any) -> int:
    return width if isinstance(width, int) else len(str(width))


# What a string method makes, reckoned before it runs: (the string, its arguments) -> characters.
_METHOD_SIZES: dict[str, Callable[..., int]] = {
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t") * max(tabsize, 0),
    "replace": lambda s, old, new, count=-1: len(s) + _occurrences(s, old, count) * len(new),
    "join": lambda s, items: _joined(items, s),
}
# The same for filters (jinja2's own): (the value, its arguments) -> characters.
_FILTER_SIZES: dict[str, Callable[..., int]] = {
    "replace": lambda s, old, new, count=None: len(str(s)) + _occurrences(str(s), str(old), count) * len(str(new)),
    "join": lambda items, d="", attribute=None: _joined(items, str(d)),
    "indent": lambda s, width=4, first=False, blank=False:
        len(str(s)) + (str(s).count("\n") + 1) * _indent_width(width),
    # Two lines in a row hold more than `width` characters (else the second's first word would
    # have fitted on the first): at most 2 n / width + 1 lines.
    "wordwrap": lambda s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True:
        len(str(s)) + (2 * len(str(s)) // max(width if isinstance(width, int) else 1, 1) + 1)
        * len(wrapstring or "\n"),
}


def _reckon(sizes: Callable[..., int], args: list, kwargs: dict, what: str) -> list:
    """Refuse a call that would make more than MAX_OUTPUT; its arguments, an iterable to join
    made a list first (what it is measured on)."""
    index = 0 if what.startswith("filter") else 1  # where a join's items are
    if what.endswith("join") and len(args) > index and not isinstance(args[index], (str, list, tuple)):
        args[index] = list(args[index])
    try:
        size = sizes(*args, **kwargs)
    except TypeError:  # arguments the function itself refuses: it says so
        return args
    _refuse_past(size, what)
    return args


def _guarded(function: Callable, name: str) -> Callable:
    """A filter, test or global that refuses huge number arguments and huge results (reckoned
    before it runs where it can make more than it is given), within the time limit."""
    sizes = _FILTER_SIZES.get(name.removeprefix("filter "))

    @functools.wraps(function)  # keeps jinja2's pass_context / pass_environment marks
    def run(*args, **kwargs):
        _check_args(args, kwargs, name)
        if name == "filter format" and args:
            check_format(args[0], name)
        if name == "filter sum":  # sum(environment, iterable, attribute, start): adding sequences is quadratic
            start = kwargs.get("start", args[3] if len(args) > 3 else 0)
            if not isinstance(start, (int, float)):
                raise TemplateLimitError("filter sum adds numbers only (start must be a number)")
        if sizes is not None:
            marked = getattr(function, "jinja_pass_arg", None) is not None  # the first argument is jinja2's
            rest = _reckon(sizes, list(args[1:] if marked else args), kwargs, name)
            args = (args[0], *rest) if marked else tuple(rest)
        return _check_result(_watched(function, *args, **kwargs), name)

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


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: jinja2.nodes.Concat, frame: Frame) -> None:
        """`a ~ b`: joined by the environment, which measures the parts first."""
        self.write("environment.concat_checked((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LimitedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator

    @staticmethod
    def concat_checked(values: tuple) -> str:
        parts = [str(v) for v in values]
        _refuse_past(sum(len(p) for p in parts), "'~'")
        return "".join(parts)

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
            count, repeated = (left, right) if isinstance(left, int) else (right, left) if isinstance(right, int) \
                else (0, left)
            if abs(count) * max(_size(repeated), 1) > MAX_OUTPUT:
                raise TemplateLimitError(f"repeating a value {count} times would exceed {MAX_OUTPUT} characters")
        elif operator == "%" and isinstance(left, str):
            _check_args(right if isinstance(right, tuple) else (right,), {}, "% formatting")
            check_format(left, "% formatting")
        elif operator == "+" and not numbers:
            _refuse_past(_size(left) + _size(right), "'+'")
        result = super().call_binop(context, operator, left, right)
        return _check_result(result, f"'{operator}'")

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        name = getattr(__obj, "__name__", "a call")
        _check_args(args, kwargs, name)
        budget = _budget()
        if budget is not None:
            budget.check_time()
        if isinstance(getattr(__obj, "__self__", None), str) and name in _METHOD_SIZES:
            args = tuple(_reckon(_METHOD_SIZES[name], [__obj.__self__, *args], kwargs, f"str.{name}")[1:])
        result = _watched(super().call, __context, __obj, *args, **kwargs)
        return _check_result(result, name)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format and format_map (jinja2 wraps them when looked up): their widths are checked
        before anything is formatted."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text, what = value.__self__, f"str.{value.__name__}"

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            check_format(text, what, style="{}")
            return wrapped(*args, **kwargs)

        return checked


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
