# -*- coding: utf-8 -*-
# Copyright: mixedrun.kong contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure label selector logic: one grammar for inventory hosts and Kubernetes objects.

No I/O here. Two spellings of the same thing are accepted:

* the Kubernetes string syntax (``k8s.io/apimachinery/pkg/labels``)::

      app=shop,tier in (web,api),!canary,version!=1,track==stable,zone notin (a,b),team

  with Kubernetes' empty values: ``track=`` and ``tier in (web,)`` accept an empty label value, ``tier in ()``
  only the empty value;

* the ``LabelSelector`` dict form of the Kubernetes API, ``{"matchLabels": {...}, "matchExpressions":
  [{"key", "operator": In|NotIn|Exists|DoesNotExist, "values"}]}``; a plain ``{label: value}`` dict is
  read as ``matchLabels``; a list of strings is a list of requirements (ANDed).

Semantics are Kubernetes' own: ``=``, ``==`` and ``in`` need the label and one of the values; ``!=`` and
``notin`` match when the label is absent or has another value; ``key`` needs the label; ``!key`` needs it
absent; all requirements must hold; the empty selector matches everything. ``Selector.to_k8s()`` renders a
selector back to the string the API server accepts, for server-side filtering.

A malformed selector raises ``SelectorError`` whose message gives the column, repeats the selector with a
caret under the fault and says what was expected there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

OP_EQUALS = "="
OP_DOUBLE_EQUALS = "=="
OP_NOT_EQUALS = "!="
OP_IN = "in"
OP_NOT_IN = "notin"
OP_EXISTS = "exists"
OP_DOES_NOT_EXIST = "!"

_EXPRESSION_OPERATORS = {
    "In": OP_IN,
    "NotIn": OP_NOT_IN,
    "Exists": OP_EXISTS,
    "DoesNotExist": OP_DOES_NOT_EXIST,
}
_OPERATOR_NAMES = dict((v, k) for k, v in _EXPRESSION_OPERATORS.items())

# Kubernetes: a label name is at most 63 characters, alphanumeric at both ends, '-', '_', '.' inside; an
# optional prefix is a DNS-1123 subdomain (lower case, at most 253 characters) followed by '/'.
_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SPECIAL = "=!(),<>"


class SelectorError(ValueError):
    """A selector that cannot be parsed; ``column`` is 1-based (None for the dict form)."""

    def __init__(self, message, text=None, position=None, field="selector"):
        self.reason = message
        self.text = text
        self.position = position
        self.column = None if position is None else position + 1
        self.field = field
        if text is not None and position is not None:
            full = "invalid %s at column %d: %s\n  %s\n  %s^" % (field, position + 1, message, text, " " * position)
        else:
            full = "invalid %s: %s" % (field, message)
        super(SelectorError, self).__init__(full)


def _check_key(key):
    """Return None when ``key`` is a valid label key, else why not."""
    if key == "":
        return "a label key may not be empty"
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "the prefix before '/' may not be empty"
        if len(prefix) > 253 or not _PREFIX_RE.match(prefix):
            return "prefix '%s' must be a lower-case DNS subdomain (e.g. 'example.com')" % prefix
    if len(name) > 63:
        return "label name '%s' is longer than 63 characters" % name
    if not _NAME_RE.match(name):
        return ("label name '%s' must start and end with a letter or digit and contain only letters, digits, '-', '_' and '.'" % name)
    return None


def _check_value(value):
    if value == "":
        return None
    if len(value) > 63:
        return "label value '%s' is longer than 63 characters" % value
    if not _NAME_RE.match(value):
        return ("label value '%s' must start and end with a letter or digit and contain only letters, digits, '-', '_' and '.'" % value)
    return None


def _type_name(value):
    for kind, name in ((bool, "a boolean"), (dict, "a dict"), (list, "a list"), (tuple, "a list"), (str, "a string"), (int, "a number"),
                       (float, "a number")):
        if isinstance(value, kind):
            return name
    return "a %s" % type(value).__name__


def label_value(value):
    """The string form of a label value given in YAML: ``true`` -> ``"true"``, ``1`` -> ``"1"``.

    Raises TypeError for lists and dicts (a label value is a scalar)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return str(value)       # a plain str (not a tagged str subclass): cheaper for Ansible to carry in results
    raise TypeError("a label value must be a string, number or boolean, not %s" % _type_name(value))


def normalize_labels(labels):
    """Return ``labels`` as a ``{str: str}`` dict; raise TypeError (with the key) when it cannot be one."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise TypeError("labels must be a dict of label: value, not %s" % _type_name(labels))
    result = {}
    for key, value in labels.items():
        key = label_value(key) if not isinstance(key, str) else str(key)
        try:
            result[key] = label_value(value)
        except TypeError as exc:
            raise TypeError("label '%s': %s" % (key, exc))
    return result


class Requirement:
    """One requirement: ``key``, ``operator`` (one of the OP_* constants) and a tuple of ``values``."""

    __slots__ = ("key", "operator", "values", "_set")

    def __init__(self, key, operator, values=()):
        self.key = key
        self.operator = operator
        self.values = tuple(values)
        self._set = frozenset(self.values)

    def matches(self, labels):
        op = self.operator
        if op == OP_EXISTS:
            return self.key in labels
        if op == OP_DOES_NOT_EXIST:
            return self.key not in labels
        present = self.key in labels
        if op in (OP_EQUALS, OP_DOUBLE_EQUALS, OP_IN):
            return present and labels[self.key] in self._set
        # != and notin: absent labels match, as in Kubernetes
        return not present or labels[self.key] not in self._set

    def to_k8s(self):
        op = self.operator
        if op == OP_EXISTS:
            return self.key
        if op == OP_DOES_NOT_EXIST:
            return "!" + self.key
        if op in (OP_IN, OP_NOT_IN):
            return "%s %s (%s)" % (self.key, op, ",".join(sorted(self._set)))
        return "%s%s%s" % (self.key, op, self.values[0])

    def to_expression(self):
        """The ``matchExpressions`` item for this requirement."""
        op = self.operator
        if op in (OP_EQUALS, OP_DOUBLE_EQUALS):
            op = OP_IN
        elif op == OP_NOT_EQUALS:
            op = OP_NOT_IN
        item = {"key": self.key, "operator": _OPERATOR_NAMES[op]}
        if op in (OP_IN, OP_NOT_IN):
            item["values"] = sorted(self._set)
        return item

    def __eq__(self, other):
        return isinstance(other, Requirement) and (self.key, self.operator, self._set) == (other.key, other.operator, other._set)

    def __hash__(self):
        return hash((self.key, self.operator, self._set))

    def __repr__(self):
        return "Requirement(%r)" % self.to_k8s()


class Selector:
    """All of ``requirements`` must hold; no requirement matches everything."""

    __slots__ = ("requirements",)

    def __init__(self, requirements=()):
        self.requirements = tuple(requirements)

    def matches(self, labels):
        for requirement in self.requirements:
            if not requirement.matches(labels):
                return False
        return True

    def is_empty(self):
        return not self.requirements

    def to_k8s(self):
        """The Kubernetes string form (``""`` for the empty selector)."""
        return ",".join(r.to_k8s() for r in self.requirements)

    def to_label_selector(self):
        """The ``LabelSelector`` dict form (``matchLabels`` for plain equalities)."""
        match_labels, expressions = {}, []
        for requirement in self.requirements:
            if requirement.operator in (OP_EQUALS, OP_DOUBLE_EQUALS) and requirement.key not in match_labels:
                match_labels[requirement.key] = requirement.values[0]
            else:
                expressions.append(requirement.to_expression())
        result = {}
        if match_labels:
            result["matchLabels"] = match_labels
        if expressions:
            result["matchExpressions"] = expressions
        return result

    def __and__(self, other):
        return Selector(self.requirements + tuple(r for r in other.requirements if r not in self.requirements))

    def __eq__(self, other):
        return isinstance(other, Selector) and self.requirements == other.requirements

    def __hash__(self):
        return hash(self.requirements)

    def __repr__(self):
        return "Selector(%r)" % self.to_k8s()

    def __str__(self):
        return self.to_k8s()


# ---------------------------------------------------------------------------------------------------------
# String syntax


class _Token:
    __slots__ = ("kind", "value", "pos")

    def __init__(self, kind, value, pos):
        self.kind = kind    # "ident", "op", "(", ")", ",", "end"
        self.value = value
        self.pos = pos

    def describe(self):
        if self.kind == "end":
            return "the end of the selector"
        return "'%s'" % self.value


def _lex(text, field):
    tokens = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "(),":
            tokens.append(_Token(ch, ch, i))
            i += 1
            continue
        if ch in "=!":
            two = text[i:i + 2]
            if two in ("==", "!="):
                tokens.append(_Token("op", two, i))
                i += 2
            else:
                tokens.append(_Token("op", ch, i))
                i += 1
            continue
        if ch in "<>":
            raise SelectorError("operator '%s' is not supported in label selectors: use =, ==, !=, in, notin, key or !key" % ch,
                                text, i, field)
        start = i
        while i < n and not text[i].isspace() and text[i] not in _SPECIAL:
            i += 1
        tokens.append(_Token("ident", text[start:i], start))
    tokens.append(_Token("end", "", n))
    return tokens


class _Parser:
    def __init__(self, text, field):
        self.text = text
        self.field = field
        self.tokens = _lex(text, field)
        self.index = 0

    def peek(self):
        return self.tokens[self.index]

    def take(self):
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, token, message):
        raise SelectorError(message, self.text, token.pos, self.field)

    def parse(self):
        requirements = []
        if self.peek().kind == "end":
            return Selector()
        while True:
            requirements.append(self.requirement())
            token = self.take()
            if token.kind == "end":
                break
            if token.kind != ",":
                self.fail(token, "expected ',' or the end of the selector after a requirement, found %s" % token.describe())
            if self.peek().kind == "end":
                self.fail(self.peek(), "expected a requirement after ',' (a trailing comma is not allowed)")
        return Selector(requirements)

    def key(self):
        token = self.take()
        if token.kind != "ident":
            self.fail(token, "expected a label key, found %s" % token.describe())
        problem = _check_key(token.value)
        if problem:
            self.fail(token, problem)
        return token.value

    def requirement(self):
        token = self.peek()
        if token.kind == "op" and token.value == "!":
            self.take()
            key = self.key()
            following = self.peek()
            if following.kind not in (",", "end"):
                self.fail(following, "expected ',' or the end of the selector after '!%s' (a '!key' requirement takes no operator), found %s"
                          % (key, following.describe()))
            return Requirement(key, OP_DOES_NOT_EXIST)
        key = self.key()
        token = self.peek()
        if token.kind in (",", "end"):
            return Requirement(key, OP_EXISTS)
        if token.kind == "op":
            self.take()
            if token.value == "!":
                self.fail(token, "expected an operator (=, ==, !=, in, notin) after key '%s', found '!'" % key)
            return Requirement(key, token.value, (self.exact_value(token.value),))
        if token.kind == "ident" and token.value in (OP_IN, OP_NOT_IN):
            self.take()
            return Requirement(key, token.value, self.value_set(token.value))
        self.fail(token, "expected an operator (=, ==, !=, in, notin), ',' or the end of the selector after key '%s', found %s"
                  % (key, token.describe()))

    def exact_value(self, operator):
        token = self.peek()
        if token.kind in (",", "end"):
            return ""   # 'key=' means the label is present with an empty value, as in Kubernetes
        if token.kind != "ident":
            self.fail(token, "expected a value after '%s', found %s" % (operator, token.describe()))
        self.take()
        problem = _check_value(token.value)
        if problem:
            self.fail(token, problem)
        return token.value

    def value_set(self, operator):
        """The values of an ``in``/``notin`` set, read as k8s.io/apimachinery's parser reads them: a value may be
        empty, so ``(web,)`` is {web, ""}, ``(,web)`` and ``(web,,api)`` hold "" too, and ``()`` is {""} (the
        label is present and empty); ``(,,)`` and ``(web,,)`` are errors there and here."""
        token = self.take()
        if token.kind != "(":
            self.fail(token, "expected '(' after '%s', found %s" % (operator, token.describe()))
        token = self.peek()
        if token.kind == ")":
            self.take()
            return [""]
        if token.kind not in ("ident", ","):
            self.fail(token, "expected a value, ',' or ')' after '(' in the '%s' set, found %s" % (operator, token.describe()))
        values = []
        while True:
            token = self.take()
            if token.kind == "ident":
                problem = _check_value(token.value)
                if problem:
                    self.fail(token, problem)
                values.append(token.value)
                following = self.peek()
                if following.kind == ")":
                    self.take()
                    return list(dict.fromkeys(values))      # a set, as in Kubernetes
                if following.kind != ",":
                    self.fail(following, "expected ',' or ')' in the '%s' set, found %s" % (operator, following.describe()))
            elif token.kind == ",":
                if not values:
                    values.append("")          # '(,': an empty first value
                following = self.peek()
                if following.kind == ")":      # ',)': an empty last value
                    self.take()
                    values.append("")
                    return list(dict.fromkeys(values))
                if following.kind == ",":      # ',,': an empty value between
                    self.take()
                    values.append("")
            else:
                self.fail(token, "expected a value or ',' in the '%s' set, found %s" % (operator, token.describe()))


def parse_string(text, field="selector"):
    """Parse the Kubernetes string syntax."""
    return _Parser(text, field).parse()


# ---------------------------------------------------------------------------------------------------------
# Dict form


def _parse_match_labels(value, field):
    if not isinstance(value, dict):
        raise SelectorError("matchLabels must be a dict of label: value, not %s" % _type_name(value), field=field)
    requirements = []
    for key, raw in value.items():
        key = key if isinstance(key, str) else label_value(key)
        problem = _check_key(key)
        if problem:
            raise SelectorError("matchLabels key '%s': %s" % (key, problem), field=field)
        try:
            text = label_value(raw)
        except TypeError as exc:
            raise SelectorError("matchLabels['%s']: %s" % (key, exc), field=field)
        problem = _check_value(text)
        if problem:
            raise SelectorError("matchLabels['%s']: %s" % (key, problem), field=field)
        requirements.append(Requirement(key, OP_EQUALS, (text,)))
    return requirements


def _parse_expressions(value, field):
    if not isinstance(value, list):
        raise SelectorError("matchExpressions must be a list of {key, operator, values}, not %s" % _type_name(value), field=field)
    requirements = []
    for index, item in enumerate(value):
        where = "matchExpressions[%d]" % index
        if not isinstance(item, dict):
            raise SelectorError("%s must be a dict with key, operator and values" % where, field=field)
        unknown = sorted(set(item) - set(("key", "operator", "values")))
        if unknown:
            raise SelectorError("%s has unknown field(s) %s; allowed: key, operator, values" % (where, ", ".join(map(str, unknown))), field=field)
        key = item.get("key")
        if not isinstance(key, str):
            raise SelectorError("%s.key is required and must be a string" % where, field=field)
        problem = _check_key(key)
        if problem:
            raise SelectorError("%s.key: %s" % (where, problem), field=field)
        operator = item.get("operator")
        if operator not in _EXPRESSION_OPERATORS:
            raise SelectorError("%s.operator must be one of In, NotIn, Exists, DoesNotExist, got %r" % (where, operator), field=field)
        op = _EXPRESSION_OPERATORS[operator]
        values = item.get("values")
        if op in (OP_IN, OP_NOT_IN):
            if not isinstance(values, list) or not values:
                raise SelectorError("%s.values must be a non-empty list for operator %s" % (where, operator), field=field)
            texts = []
            for position, raw in enumerate(values):
                try:
                    text = label_value(raw)
                except TypeError as exc:
                    raise SelectorError("%s.values[%d]: %s" % (where, position, exc), field=field)
                problem = _check_value(text)
                if problem:
                    raise SelectorError("%s.values[%d]: %s" % (where, position, problem), field=field)
                texts.append(text)
            requirements.append(Requirement(key, op, texts))
        else:
            if values:
                raise SelectorError("%s.values must be empty for operator %s" % (where, operator), field=field)
            requirements.append(Requirement(key, op))
    return requirements


def parse_dict(value, field="selector"):
    """Parse the ``LabelSelector`` dict form (or a plain ``{label: value}`` dict)."""
    if "matchLabels" in value or "matchExpressions" in value:
        unknown = sorted(set(value) - set(("matchLabels", "matchExpressions")))
        if unknown:
            raise SelectorError("unknown field(s) %s next to matchLabels/matchExpressions; a label selector has only those two"
                                % ", ".join(map(str, unknown)), field=field)
        requirements = _parse_match_labels(value.get("matchLabels") or {}, field)
        requirements.extend(_parse_expressions(value.get("matchExpressions") or [], field))
        return Selector(requirements)
    for alias in ("match_labels", "match_expressions", "matchlabels", "matchexpressions"):
        if alias in value:
            raise SelectorError("'%s' is not a selector field: write matchLabels / matchExpressions (Kubernetes spelling)" % alias, field=field)
    return Selector(_parse_match_labels(value, field))


def parse_selector(value, field="selector"):
    """Parse any accepted spelling of a selector into a ``Selector``.

    ``None`` and ``""`` give the empty selector (matches everything). Raises SelectorError."""
    if value is None:
        return Selector()
    if isinstance(value, Selector):
        return value
    if isinstance(value, str):
        return parse_string(value, field)
    if isinstance(value, dict):
        return parse_dict(value, field)
    if isinstance(value, (list, tuple)):
        selector = Selector()
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise SelectorError("a selector list holds requirement strings such as 'app=shop'; item %d is %s"
                                    % (index, _type_name(item)), field=field)
            selector = selector & parse_string(item, "%s[%d]" % (field, index))
        return selector
    raise SelectorError("a selector is a string such as 'app=shop,tier in (web,api)' or a dict with matchLabels/matchExpressions, not %s"
                        % _type_name(value), field=field)
