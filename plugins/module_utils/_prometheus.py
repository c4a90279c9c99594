# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which metrics a PromQL query reads, and what a Kong operator must switch on for them to exist (pure).

Kong 3.9's prometheus plugin exports request counts, latencies, bandwidth and target health only when its
``status_code_metrics``, ``latency_metrics``, ``bandwidth_metrics`` and ``upstream_health_metrics`` options are on
(all default to false), and only for routes that saw traffic on that node. A gate whose query reads a metric that
has no series at all can never see data: the rollout checks that before its first step.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# PromQL words that are not metric names: aggregation operators, keywords, set operators.
_KEYWORDS = frozenset("""
sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
by without on ignoring group_left group_right offset bool and or unless atan2 inf nan start end
""".split())

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")

# Kong's metric -> the prometheus plugin option that makes Kong export it.
KONG_METRIC_OPTIONS = {
    "kong_http_requests_total": "status_code_metrics",
    "kong_request_latency_ms": "latency_metrics",
    "kong_upstream_latency_ms": "latency_metrics",
    "kong_kong_latency_ms": "latency_metrics",
    "kong_bandwidth_bytes": "bandwidth_metrics",
    "kong_upstream_target_health": "upstream_health_metrics",
}


def metric_names(query):
    """The metric names a PromQL expression reads, in order of appearance (functions, keywords, label names,
    strings and durations left out). ``{__name__="x"}`` selectors are not resolved."""
    text = _STRING.sub('""', query or "")
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    previous = None
    while previous != text:
        previous = text
        text = _GROUPING.sub(" ", text)
    names = []
    for match in _IDENT.finditer(text):
        word, call = match.group(1), match.group(2)
        if call or word in _KEYWORDS or re.match(r"^\d", word):
            continue
        if word not in names:
            names.append(word)
    return names


def missing_metric_hint(name):
    """What to switch on so that ``name`` exists, or None for metrics that are not Kong's."""
    option = KONG_METRIC_OPTIONS.get(re.sub(r"_(bucket|count|sum)$", "", name))
    if option:
        return ("Kong exports %s only with the prometheus plugin enabled and its %s option on (off by default), and only "
                "for routes that carried traffic on that node" % (name, option))
    if name.startswith("kong_"):
        return "is the prometheus plugin enabled on the service or globally?"
    return None
