# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.mixedrun.kong.plugins.module_utils._prometheus import metric_names, missing_metric_hint


@pytest.mark.parametrize("query, names", [
    ('sum(rate(kong_http_requests_total{service="shop",code=~"5.."}[2m])) / sum(rate(kong_http_requests_total{service="shop"}[2m]))',
     ["kong_http_requests_total"]),
    ('histogram_quantile(0.99, sum by (le) (rate(kong_request_latency_ms_bucket{service="shop"}[1m])))',
     ["kong_request_latency_ms_bucket"]),
    ('sum(rate(lab_http_requests_total{kind="container",code=~"5.."}[10s])) / sum(rate(lab_http_requests_total{kind="container"}[10s])) or vector(0)',
     ["lab_http_requests_total"]),
    ('max without (instance) (up{job="kong"}) and on (job) absent(foo_bar) == 0', ["up", "foo_bar"]),
    ('rate(a:b_total[5m] offset 1h) > bool 0.5 unless ignoring (x) c', ["a:b_total", "c"]),
    ('sum(x{label="rate(y)"})', ["x"]),
])
def test_metric_names(query, names):
    assert metric_names(query) == names


def test_hints_name_the_kong_option():
    assert "status_code_metrics" in missing_metric_hint("kong_http_requests_total")
    assert "latency_metrics" in missing_metric_hint("kong_request_latency_ms_bucket")
    assert "upstream_health_metrics" in missing_metric_hint("kong_upstream_target_health")
    assert "prometheus plugin" in missing_metric_hint("kong_something_new")
    assert missing_metric_hint("lab_http_requests_total") is None
