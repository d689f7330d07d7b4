"""Submit a page's form as a browser would: the request ``Response.form`` returns.

It follows the HTML Living Standard's form submission: the form's controls give the entry
list ("constructing the entry list": which controls count, and what each sends), the
clicked button may change the action, method and encoding, and ``formdata`` encodes the
list. A crawler runs no script and has no user, so it takes what a browser left alone
would: the values the page sets, no file chosen, an image button clicked at (0, 0), and
no validation (an empty required field is sent empty).

Which form owns a control is the parsed tree's answer, corrected where the HTML parser
ties controls to a form its markup closed too early (``_parser_owners``).
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Protocol
from urllib.parse import urljoin, urlsplit

from lxml import etree
from parsel import Selector, SelectorList

from framework.errors import FormError
from framework.http.encoding import charset_name, web_codec
from framework.http.formdata import (
    Entry,
    File,
    multipart,
    output_encoding,
    text_plain,
    urlencoded,
)

__all__ = ["SECRET_QUERY", "Click", "FormData", "Page", "Submission", "submission"]

#: What ``click`` may be: True (the default button), False (none), a CSS query, an element.
Click = bool | str | Selector | SelectorList[Selector]
#: What ``data`` maps a field's name to: its value, its values, or None to leave it out.
FormData = Mapping[str, str | Sequence[str] | None]

#: The elements that take part in a form's submission ("submittable elements").
_SUBMITTABLE = ("button", "input", "select", "textarea")
_ASCII_SPACE = " \t\n\f\r"
_INPUT_TYPES = frozenset(
    "hidden text search tel url email password date month week time datetime-local number "  # noqa: SIM905
    "range color checkbox radio file submit image reset button".split()
)
_ENCTYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
#: What an ``<input type=submit>`` without a value sends: its label in Chrome and Safari.
_SUBMIT_LABEL = "Submit"
_FLOAT = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_DATE = r"(\d{4,})-(\d\d)-(\d\d)"
_TIME = r"(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,3}))?)?"
#: A character that may be strongly directional: not ASCII digits, spaces or punctuation.
_NOT_ASCII_NEUTRAL = re.compile(r"[^\x00-\x40\x5b-\x60\x7b-\x7f]")


class Page(Protocol):
    """What a form needs of the page it is on (a ``Response``)."""

    @property
    def url(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def encoding(self) -> str: ...

    @property
    def text(self) -> str: ...


#: A request's meta key: its URL's query holds a password (a sign-in form sent by GET),
#: so what fw shows and records of the request leaves the query out. Its value lists the
#: fields that hold one (True: every field), whose values a recording masks in headers.
SECRET_QUERY = "secret_query"


@dataclass(frozen=True)
class Submission:
    """What submitting a form sends: method, URL, headers and body."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    #: The fields of the URL's query that hold a password: a GET form's password fields.
    secret_query: tuple[str, ...] = ()


def submission(
    document: Selector,
    page: Page,
    *,
    css: str | None = None,
    xpath: str | None = None,
    index: int = 0,
    data: FormData | None = None,
    click: Click = True,
) -> Submission:
    """Return what submitting a form of ``document`` sends; see ``Response.form``."""
    if css is not None and xpath is not None:
        raise TypeError("form() takes css or xpath, not both")
    owners = _Owners(document.root, page)
    form = _pick(document, owners, page, css, xpath, index)
    button = _submitter(document, owners, form, click, page)
    method = _method(form, button)
    if method == "dialog":
        raise FormError(
            f"{page.url}: {_describe(form)} has method=dialog: it closes a dialog and sends nothing"
        )
    action = _action(form, button, page)
    encoding = _encoding(form, page)
    entries = _entries(owners, form, button, encoding)
    if data:
        entries = _override(entries, data, owners.controls_of(form))
    sent = _encode(
        method,
        action,
        _enctype(form, button),
        [(name, value) for _, name, value in entries],
        encoding,
        page.url,
    )
    if sent.method != "GET":
        return sent
    return replace(sent, secret_query=_password_fields(owners, form))


def _password_fields(owners: _Owners, form: etree._Element) -> tuple[str, ...]:
    return tuple(
        control.get("name") or ""
        for control in owners.controls_of(form)
        if control.tag == "input" and _input_type(control) == "password" and control.get("name")
    )


# -- Which form ---------------------------------------------------------------------------


def _pick(
    document: Selector,
    owners: _Owners,
    page: Page,
    css: str | None,
    xpath: str | None,
    index: int,
) -> etree._Element:
    """Return the ``index``-th form the query picks: forms, the form an element is in, or
    the forms an element holds."""
    if css is None and xpath is None:
        query, found = "", owners.forms
    elif css is not None:
        query, found = f"css {css!r}", _elements(document.css(css))
    else:
        query, found = f"xpath {xpath!r}", _elements(document.xpath(xpath or ""))
    # Each form once, in the order first met (a dict keeps it: thousands may match).
    forms = list(dict.fromkeys(form for element in found for form in owners.forms_of(element)))
    if not forms:
        listed = [_describe(form) for form in owners.forms[:5]]
        where = f" (it has {len(owners.forms)}: {', '.join(listed)})" if listed else ""
        picked = f"matches {query}" if query else "is on the page"
        raise FormError(f"{page.url}: no form {picked}{where}")
    if not -len(forms) <= index < len(forms):
        count = f"{len(forms)} form{'s' if len(forms) > 1 else ''}"
        raise FormError(
            f"{page.url}: form index {index} is out of range: {query or 'the page'} has {count}"
        )
    return forms[index]


def _elements(found: SelectorList[Selector]) -> list[etree._Element]:
    """Return the elements a query matched (not the strings: ``::text``, ``@href``)."""
    return [item.root for item in found if isinstance(item.root, etree._Element)]


def _describe(element: etree._Element) -> str:
    """Return a short tag for messages: ``<form id="login" action="/session">``."""
    shown = [
        f'{name}="{value[:60]}"'
        for name in ("id", "name", "type", "value", "action", "class")
        if (value := element.get(name)) is not None
    ]
    return f"<{' '.join([str(element.tag), *shown[:3]])}>"


# -- Which button -------------------------------------------------------------------------


def _submitter(
    document: Selector, owners: _Owners, form: etree._Element, click: Click, page: Page
) -> etree._Element | None:
    """Return the submit button clicked: the form's default one, none, or the one asked for.

    A disabled default button submits nothing in a browser; here the form is sent without
    it. A disabled button asked for by name is an error: no one can click it.
    """
    if click is False:
        return None
    if click is True:
        default = next((c for c in owners.controls_of(form) if _is_submit_button(c)), None)
        return None if default is None or owners.disabled(default) else default
    if isinstance(click, str):
        asked, found = f"click {click!r}", _elements(document.css(click))
    elif isinstance(click, Selector | SelectorList):
        items = [click] if isinstance(click, Selector) else list(click)
        asked, found = "click", _elements(SelectorList(items))
    else:
        raise TypeError(f"click must be True, False, a CSS query or an element, not {click!r}")
    if not found:
        raise FormError(f"{page.url}: {asked} matches nothing on the page")
    buttons = [e for e in found if _is_submit_button(e) and owners.form_of_control(e) is form]
    if not buttons:
        raise FormError(
            f"{page.url}: {asked} matches {_describe(found[0])}, which is not a submit "
            f"button of {_describe(form)}"
        )
    if owners.disabled(buttons[0]):
        raise FormError(
            f"{page.url}: {asked} matches {_describe(buttons[0])}, which is disabled: "
            "no one can click it (data= can still send its name and value)"
        )
    return buttons[0]


def _is_submit_button(element: etree._Element) -> bool:
    if element.tag == "button":
        return _button_type(element) == "submit"
    return element.tag == "input" and _input_type(element) in ("submit", "image")


def _is_button(element: etree._Element, kind: str) -> bool:
    """Tell whether a control is a button of any kind (which only counts if clicked)."""
    return kind in ("button", "submit", "image", "reset") and element.tag in ("button", "input")


def _button_type(button: etree._Element) -> str:
    kind = (button.get("type") or "").lower()
    if kind in ("submit", "reset", "button"):
        return kind
    # A button that commands another element (``commandfor``) submits nothing by default.
    return "button" if button.get("commandfor") is not None and not kind else "submit"


def _input_type(element: etree._Element) -> str:
    kind = (element.get("type") or "text").lower()
    return kind if kind in _INPUT_TYPES else "text"


# -- How and where ------------------------------------------------------------------------


def _attribute(form: etree._Element, button: etree._Element | None, name: str) -> str | None:
    """Return the button's ``form<name>`` if it has one, else the form's ``<name>``."""
    if button is not None and button.get("form" + name) is not None:
        return button.get("form" + name)
    return form.get(name)


def _method(form: etree._Element, button: etree._Element | None) -> str:
    method = (_attribute(form, button, "method") or "get").lower()
    return method if method in ("get", "post", "dialog") else "get"


def _enctype(form: etree._Element, button: etree._Element | None) -> str:
    enctype = (_attribute(form, button, "enctype") or "").lower()
    return enctype if enctype in _ENCTYPES else _ENCTYPES[0]


def _action(form: etree._Element, button: etree._Element | None, page: Page) -> str:
    """Resolve the action against the page's base URL; an empty one is the page itself."""
    written = (_attribute(form, button, "action") or "").strip(_ASCII_SPACE)
    if not written:
        return page.url
    link = re.sub(r"[\t\n\r]", "", written)  # as the URL parser drops them
    try:
        url = urljoin(page.base_url, link)
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        raise FormError(f"{page.url}: the form's action {written!r} is not a valid URL") from None
    if scheme not in ("http", "https"):
        raise FormError(f"{page.url}: the form submits to {url[:200]!r}, which is not http(s)")
    return url


def _encoding(form: etree._Element, page: Page) -> str:
    """Pick the form's charset: the first of ``accept-charset`` browsers know, else the
    page's."""
    accepted = form.get("accept-charset")
    if accepted is None:
        return output_encoding(page.encoding)
    labels = re.split(r"[\s,]+", accepted)  # browsers also split on commas
    known = next((label for label in labels if web_codec(label)), "utf-8")
    return output_encoding(known)


# -- What each control sends ("constructing the entry list") ------------------------------

#: An entry and the position of the control that made it, for ``data`` to insert by.
_Slotted = tuple[int, str, "str | File"]


def _entries(
    owners: _Owners, form: etree._Element, submitter: etree._Element | None, encoding: str
) -> list[_Slotted]:
    """Return what the form's controls send, in tree order."""
    controls = owners.controls_of(form)
    checked = _checked(controls)
    directions: dict[etree._Element, str] = {}
    entries: list[_Slotted] = []
    for slot, field in enumerate(controls):
        kind = _input_type(field) if field.tag == "input" else str(field.tag)
        if owners.inert(field) or (_is_button(field, kind) and field is not submitter):
            continue
        if kind in ("checkbox", "radio") and field not in checked:
            continue
        if kind == "image":
            prefix = f"{field.get('name')}." if field.get("name") else ""
            entries += [(slot, prefix + "x", "0"), (slot, prefix + "y", "0")]
            continue
        name = field.get("name")
        if not name:
            continue
        values = _values(field, kind, encoding)
        entries += [(slot, name, value) for value in values]
        dirname = field.get("dirname")
        if dirname:
            text = values[0] if values and isinstance(values[0], str) else ""
            entries.append((slot, dirname, _direction(field, text, directions)))
    return entries


def _values(field: etree._Element, kind: str, encoding: str) -> list[str | File]:
    """Return what a named, counted control sends; ``kind`` is its tag, or input type."""
    if kind == "select":
        return list(_selected(field))
    if kind == "textarea":
        return [_textarea_value(field)]
    if kind == "button":
        return [field.get("value") or ""]
    if kind in ("checkbox", "radio"):
        value = field.get("value")
        return ["on" if value is None else value]
    if kind == "file":
        return [File()]
    if kind == "hidden" and (field.get("name") or "").lower() == "_charset_":
        return [charset_name(encoding)]
    if kind == "submit":
        value = field.get("value")
        return [_SUBMIT_LABEL if value is None else value]
    return [_input_value(field, kind)]


def _checked(controls: Sequence[etree._Element]) -> set[etree._Element]:
    """Return the checked checkboxes and radios; of a radio group, only the last checked."""
    checked: set[etree._Element] = set()
    last_radio: dict[str, etree._Element] = {}
    for control in controls:
        if control.tag != "input" or control.get("checked") is None:
            continue
        kind, name = _input_type(control), control.get("name")
        if kind == "radio" and name:  # checking one unchecks the others of its group
            if name in last_radio:
                checked.discard(last_radio[name])
            last_radio[name] = control
        if kind in ("checkbox", "radio"):
            checked.add(control)
    return checked


def _selected(select: etree._Element) -> Iterable[str]:
    """Yield the values of a select's selected options that are not disabled."""
    options = list(select.iter("option"))
    chosen = [option for option in options if option.get("selected") is not None]
    if select.get("multiple") is None:
        if chosen:
            chosen = chosen[-1:]
        elif _display_size(select) == 1:  # a drop-down always shows an option
            chosen = [option for option in options if not _option_disabled(option)][:1]
    for option in chosen:
        if not _option_disabled(option):
            yield _option_value(option)


def _display_size(select: etree._Element) -> int:
    found = re.match(r"[ \t\n\f\r]*(\d+)", select.get("size") or "")
    size = int(found[1]) if found else 0
    return size if size > 0 else (4 if select.get("multiple") is not None else 1)


def _option_disabled(option: etree._Element) -> bool:
    parent = option.getparent()
    return option.get("disabled") is not None or (
        parent is not None and parent.tag == "optgroup" and parent.get("disabled") is not None
    )


def _option_value(option: etree._Element) -> str:
    value = option.get("value")
    if value is not None:
        return value
    text = re.sub(r"[ \t\n\f\r]+", " ", "".join(option.itertext()))
    return text.strip(" ")  # ASCII whitespace only, not NBSP


def _textarea_value(textarea: etree._Element) -> str:
    """Return a textarea's text: the parser drops one newline right after the start tag."""
    text = re.sub(r"\r\n?", "\n", "".join(textarea.itertext()))
    return text[1:] if text.startswith("\n") else text


def _input_value(field: etree._Element, kind: str) -> str:
    """Return an input's value as the browser sanitises it for its type."""
    value = field.get("value") or ""
    if kind in ("text", "search", "tel", "password", "url", "email"):
        value = value.replace("\r", "").replace("\n", "")
    if kind == "url":
        return value.strip(_ASCII_SPACE)
    if kind == "email":
        if field.get("multiple") is None:
            return value.strip(_ASCII_SPACE)
        return ",".join(address.strip(_ASCII_SPACE) for address in value.split(","))
    if kind == "number":
        return value if _FLOAT.fullmatch(value) else ""
    if kind == "range":
        return _range_value(field, value)
    if kind == "color":
        return value.lower() if _COLOR.fullmatch(value) else "#000000"
    if kind in ("date", "month", "week", "time", "datetime-local"):
        return _moment(kind, value)
    return value


def _range_value(field: etree._Element, value: str) -> str:
    """Return a range's value: clamped, on its step, the middle of the range by default."""
    low, high = _number(field.get("min"), 0.0), _number(field.get("max"), 100.0)
    high = max(high, low)
    number = min(max(_number(value, low / 2 + high / 2), low), high)
    step_text = (field.get("step") or "").lower()
    step = _number(step_text, 1.0)
    steps = (number - _step_base(field)) / (step if step > 0 else 1.0)
    if step_text != "any" and math.isfinite(steps):  # not for bounds near the float limits
        step = step if step > 0 else 1.0
        number += (math.floor(steps + 0.5) - steps) * step
        if number > high:
            number -= step
        number = max(number, low)
    return _shortest(float(f"{number:.12g}"))  # no 0.30000000000000004


def _step_base(field: etree._Element) -> float:
    return _number(field.get("min"), _number(field.get("value"), 0.0))


def _shortest(number: float) -> str:
    """Write a number as JavaScript does: ``50``, not ``50.0``; ``1e+21``."""
    return str(int(number)) if number.is_integer() and abs(number) < 1e21 else repr(number)


def _number(text: str | None, default: float) -> float:
    if text is None or not _FLOAT.fullmatch(text):
        return default
    number = float(text)
    return number if math.isfinite(number) else default


def _moment(kind: str, value: str) -> str:
    """Return a date or time input's value if valid for its type, else the empty string."""
    patterns = {
        "date": _DATE,
        "month": r"(\d{4,})-(\d\d)",
        "week": r"(\d{4,})-W(\d\d)",
        "time": _TIME,
        "datetime-local": f"{_DATE}[T ]{_TIME}",
    }
    found = re.fullmatch(patterns[kind], value)
    if found is None:
        return ""
    numbers = [int(part) if part else 0 for part in found.groups()]
    valid = {
        "date": lambda: _valid_date(*numbers[:3]),
        "month": lambda: int(numbers[0]) > 0 and 1 <= numbers[1] <= 12,
        "week": lambda: _valid_week(*numbers[:2]),
        "time": lambda: _valid_time(*numbers[:3]),
        "datetime-local": lambda: _valid_date(*numbers[:3]) and _valid_time(*numbers[3:6]),
    }[kind]()
    if not valid:
        return ""
    if kind == "datetime-local":  # normalised: a T, and the time written shortest
        year, month, day, hour, minute, second, fraction = found.groups()
        fraction = (fraction or "").rstrip("0")
        seconds = f":{second}" if fraction or (second or "00") != "00" else ""
        return f"{year}-{month}-{day}T{hour}:{minute}{seconds}{'.' + fraction if fraction else ''}"
    return value


def _valid_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _valid_week(year: int, week: int) -> bool:
    if not 1 <= year <= 9999:
        return False
    return 1 <= week <= date(year, 12, 28).isocalendar()[1]


def _valid_time(hour: int, minute: int, second: int) -> bool:
    return hour <= 23 and minute <= 59 and second <= 59


def _direction(field: etree._Element, value: str, known: dict[etree._Element, str]) -> str:
    """Return a control's text direction, ``ltr`` or ``rtl``, for its ``dirname`` field.

    ``known`` keeps what ancestors with ``dir=auto`` said, so that many controls under
    one read its text once.
    """
    for node in (field, *field.iterancestors()):
        written = (node.get("dir") or "").lower()
        if written in ("ltr", "rtl"):
            return written
        if written == "auto" and node is field:
            return _first_strong(value)
        if written == "auto":
            if node not in known:
                known[node] = _first_strong(text for text in node.itertext())
            return known[node]
    return "ltr"


def _first_strong(texts: str | Iterable[str]) -> str:
    """Return the direction of the first strongly directional character; ltr if none."""
    for text in [texts] if isinstance(texts, str) else texts:
        start = 0
        while found := _NOT_ASCII_NEUTRAL.search(text, start):  # skip digits, spaces, ...
            kind = unicodedata.bidirectional(found[0])
            if kind in ("L", "R", "AL"):
                return "ltr" if kind == "L" else "rtl"
            start = found.end()
    return "ltr"


# -- data= --------------------------------------------------------------------------------


def _override(
    entries: list[_Slotted], data: FormData, controls: Sequence[etree._Element]
) -> list[_Slotted]:
    """Apply ``data``: a name's values replace its entries where the first of them was; a
    new name goes where its control is (an unchecked checkbox), else at the end; None
    leaves the name out."""
    wanted = {name: _data_values(name, value) for name, value in data.items()}
    placed: set[str] = set()
    result: list[_Slotted] = []
    for slot, name, value in entries:
        if name not in wanted:
            result.append((slot, name, value))
        elif name not in placed:
            placed.add(name)
            result += [(slot, name, new) for new in wanted[name]]
    slots: dict[str, int] = {}
    for slot, control in enumerate(controls):
        slots.setdefault(control.get("name") or "", slot)
    for name, values in wanted.items():
        if name in placed:
            continue
        slot = slots.get(name, len(controls))
        at = next((i for i, entry in enumerate(result) if entry[0] > slot), len(result))
        result[at:at] = [(slot, name, value) for value in values]
    return result


def _data_values(name: object, value: object) -> list[str]:
    if not isinstance(name, str):
        raise TypeError(f"form data names must be strings, not {name!r}")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise TypeError(
        f"form data[{name!r}] must be a string, a list of strings or None, not {value!r}"
    )


# -- The request --------------------------------------------------------------------------


def _encode(
    method: str, action: str, enctype: str, entries: list[Entry], encoding: str, page_url: str
) -> Submission:
    """Build the request: GET puts the entries in the URL's query, POST in the body."""
    headers = _referrer_headers(page_url, action, method)
    if method == "get":
        base = action.partition("#")[0].partition("?")[0]
        return Submission("GET", f"{base}?{urlencoded(entries, encoding)}", headers, None)
    if enctype == "multipart/form-data":
        body, boundary = multipart(entries, encoding)
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    elif enctype == "text/plain":
        body = text_plain(entries, encoding)
        headers["Content-Type"] = "text/plain"
    else:
        body = urlencoded(entries, encoding).encode("ascii")
        headers["Content-Type"] = enctype
    return Submission("POST", action, headers, body)


def _referrer_headers(page_url: str, target: str, method: str) -> dict[str, str]:
    """Return the ``Referer`` (and for POST, ``Origin``) a browser sends with a form.

    Sites' CSRF checks read them (Django rejects an HTTPS POST without either). Browsers'
    default policy, strict-origin-when-cross-origin: the page's URL to its own origin, its
    origin elsewhere, nothing from HTTPS to HTTP.
    """
    origin, target_origin = _origin(page_url), _origin(target)
    if origin is None:
        return {}
    downgrade = page_url.lower().startswith("https:") and not target.lower().startswith("https:")
    headers = {}
    if not downgrade:
        parts = urlsplit(page_url)  # written as browsers do: no credentials, no default port
        page = origin + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers["Referer"] = page if origin == target_origin else origin + "/"
    if method == "post":
        headers["Origin"] = "null" if downgrade else origin
    return headers


def _origin(url: str) -> str | None:
    """Return a URL's origin (``https://host:8443``), or None if it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    default = 80 if scheme == "http" else 443
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


# -- Which form owns a control ------------------------------------------------------------


class _Owners:
    """Which form owns each control of a page, and which controls are out of play.

    Worked out once per ``form()`` call, top down, so that a page of thousands of controls
    nested thousands deep costs one pass, not one walk up the tree per control.
    """

    def __init__(self, root: etree._Element, page: Page) -> None:
        # What a <template> holds is not part of the page: no form, no control.
        inert = {e for t in root.iter("template") for e in t.iter("form", *_SUBMITTABLE)}
        self.forms = [form for form in root.iter("form") if form not in inert]
        self.controls = [c for c in root.iter(*_SUBMITTABLE) if c not in inert]
        self._owner: dict[etree._Element, etree._Element | None] = dict.fromkeys(self.controls)
        for form in self.forms:  # document order: an inner form comes later, and wins
            for control in form.iter(*_SUBMITTABLE):
                if control in self._owner:
                    self._owner[control] = form
        self._by_attribute(root)
        self._inert = {c for d in root.iter("datalist") for c in d.iter(*_SUBMITTABLE)}
        self._fieldset_disabled = _disabled_by_fieldsets(root)
        self._real: dict[etree._Element, etree._Element] = {}
        if self.forms and self._needs_parser_view(page):
            self._apply(_parser_owners(page.text, root))

    def controls_of(self, form: etree._Element) -> list[etree._Element]:
        """Return the controls ``form`` owns, in tree order."""
        return [control for control in self.controls if self._owner[control] is form]

    def form_of_control(self, control: etree._Element) -> etree._Element | None:
        return self._owner.get(control)

    def forms_of(self, element: etree._Element) -> list[etree._Element]:
        """Return the forms a matched element means: itself, its owner, the form around it,
        or else the forms inside it."""
        if element in self._owner:
            owner = self._owner[element]
            return [] if owner is None else [owner]
        around = element if element.tag == "form" else next(element.iterancestors("form"), None)
        inside = [around] if around is not None else list(element.iter("form"))
        return [self._real.get(form, form) for form in inside]

    def disabled(self, control: etree._Element) -> bool:
        """Tell whether a control is disabled, itself or by a disabled fieldset around it."""
        return control.get("disabled") is not None or control in self._fieldset_disabled

    def inert(self, control: etree._Element) -> bool:
        """Tell whether a control sends nothing whatever it holds: disabled, in a datalist."""
        return self.disabled(control) or control in self._inert

    def _by_attribute(self, root: etree._Element) -> None:
        """Give controls with a ``form`` attribute the form it names: none if it names none."""
        named = [c for c in self.controls if c.get("form") is not None]
        if not named:
            return
        ids: dict[str, etree._Element] = {}
        for element in root.iter():
            key = element.get("id") if isinstance(element.tag, str) else None
            if key is not None:
                ids.setdefault(key, element)
        for control in named:
            found = ids.get(control.get("form") or "")
            self._owner[control] = found if found is not None and found.tag == "form" else None

    def _needs_parser_view(self, page: Page) -> bool:
        """Tell whether the tree may disagree with a browser: a control outside every form,
        or a form opened inside another in the source."""
        if any(self._owner[c] is None and c.get("form") is None for c in self.controls):
            return True
        depth = 0
        for tag in re.finditer(r"<(/?)form[\s/>]", page.text, re.IGNORECASE):
            depth = 0 if tag[1] else depth + 1
            if depth > 1:
                return True
        return False

    def _apply(self, found: _ParserView | None) -> None:
        if found is None:
            return
        for control, form in found.owners.items():
            if control.get("form") is None and control in self._owner:
                self._owner[control] = form
        self._real = found.real


def _disabled_by_fieldsets(root: etree._Element) -> set[etree._Element]:
    """Return the controls a disabled fieldset disables: all in it but its first legend's."""
    disabled: set[etree._Element] = set()
    for fieldset in root.iter("fieldset"):
        if fieldset.get("disabled") is None:
            continue
        legend = next(fieldset.iterchildren("legend"), None)
        spared = set() if legend is None else set(legend.iter(*_SUBMITTABLE))
        disabled.update(c for c in fieldset.iter(*_SUBMITTABLE) if c not in spared)
    return disabled


@dataclass(frozen=True)
class _ParserView:
    owners: dict[etree._Element, etree._Element | None]
    real: dict[etree._Element, etree._Element]  # a form the parser ignored → the open one


def _parser_owners(text: str, root: etree._Element) -> _ParserView | None:
    """Return the form the HTML parser ties each control to, or None if unsure.

    A browser's parser keeps a "form element pointer" from ``<form>`` to ``</form>`` and
    ties every control it creates meanwhile to that form, wherever markup closed the
    element (``<div><form></div><div><input></div></form>``); a ``<form>`` inside an open
    form is ignored. lxml builds the tree otherwise, so the source's tags are read again
    and matched to the tree's elements in order; if they do not line up, the tree stands.
    """
    found = _source_tags(text)
    elements = list(root.iter("form", *_SUBMITTABLE))
    if [(e.tag, e.get("name")) for e in elements] != [(tag, name) for tag, name, _ in found]:
        return None
    forms = [e for e in elements if e.tag == "form"]
    owners: dict[etree._Element, etree._Element | None] = {}
    real: dict[etree._Element, etree._Element] = {}
    for element, (tag, _, pointer) in zip(elements, found, strict=True):
        owner = None if pointer is None else forms[pointer]
        if tag != "form":
            owners[element] = owner
        elif owner is not None and owner is not element:
            real[element] = owner
    return _ParserView(owners, real)


#: An attribute list, quoted values and all.
_ATTRIBUTES = r"""[^>"']*(?:(?:"[^"]*"|'[^']*')[^>"']*)*"""
#: What the form pointer depends on: comments and raw text, skipped whole, and the tags of
#: forms, controls and templates. A regex, as html.parser reads a 2 MB page 10× slower.
_SOURCE_TAGS = re.compile(
    r"<(?:!--.*?(?:-->|\Z)"
    r"|(script|style|textarea|title|xmp|iframe|noembed|noframes|plaintext)(?=[\s/>])"
    rf"({_ATTRIBUTES})>.*?(?:</\1\s*>|\Z)"
    rf"|(/?)(form|input|button|select|textarea|template)(?=[\s/>])({_ATTRIBUTES})>)",
    re.IGNORECASE | re.DOTALL,
)
#: A ``name`` attribute. Met inside another attribute's value (``value="a name=b"``), it
#: names the control wrongly, the tags then do not line up with the tree, and it stands.
_NAME = re.compile(r"""(?:^|[\s/])name\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]*))""", re.IGNORECASE)


def _source_tags(text: str) -> list[tuple[str, str | None, int | None]]:
    """Return each form and control tag of the source: its tag, its name, and the index of
    the form the form element pointer then holds (None: no form, or inside a template)."""
    found: list[tuple[str, str | None, int | None]] = []
    pointer: int | None = None
    forms = templates = 0
    for match in _SOURCE_TAGS.finditer(text):
        raw, raw_attributes, closing, tag, attributes = match.groups()
        if raw is not None and raw.lower() != "textarea":
            continue
        tag = (tag or raw).lower()
        if tag == "template":
            templates = max(0, templates + (-1 if closing else 1))
        elif closing:
            pointer = None if tag == "form" and not templates else pointer
        elif tag == "form":
            if pointer is None and not templates:
                pointer = forms
            found.append((tag, _name(attributes), None if templates else pointer))
            forms += 1
        else:
            attributes = attributes if raw is None else raw_attributes
            found.append((tag, _name(attributes), None if templates else pointer))
    return found


def _name(attributes: str) -> str | None:
    """Return the ``name`` attribute of a tag's attribute list (the first, as HTML keeps)."""
    found = _NAME.search(attributes)
    if found is None:
        return None
    value = next((v for v in found.groups() if v is not None), "")
    return html.unescape(value) if "&" in value else value
