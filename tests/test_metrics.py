from tui.probes.metrics import parse_prometheus

LLAMACPP = """# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 4
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 4
llamacpp:prompt_tokens_seconds 450.253
"""

VLLM = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B"} 3.0
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B"} 5.0
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B"} 0.42
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 12.0
vllm:odd NaN
"""


def test_llamacpp_gauges():
    m = parse_prometheus(LLAMACPP)
    assert m["llamacpp:requests_processing"] == 4 and m["llamacpp:requests_deferred"] == 4
    assert m["llamacpp:prompt_tokens_seconds"] == 450.253


def test_labelled_samples_and_junk():
    m = parse_prometheus(VLLM)
    assert m["vllm:num_requests_running"] == 3 and m["vllm:num_requests_waiting"] == 5
    assert m["vllm:kv_cache_usage_perc"] == 0.42
    assert "vllm:odd" not in m
