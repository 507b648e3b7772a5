"""The TAM's four attention maps against a direct loop implementation, the relative-position bucket,
ablation switches and checkpoint round trips."""

import math
from dataclasses import replace

import pytest
import torch

from dakd.models import AnomalyModel, ModelConfig, relative_buckets

NAMES = ("i3d", "s3d", "clip")


def test_relative_bucket_is_debertas():
    delta = relative_buckets(6, k=2)
    for i in range(6):
        for j in range(6):
            assert delta[i, j] == min(max(i - j, -2), 1) + 2
    assert delta.min() == 0 and delta.max() == 3


def loop_logits(layer, inputs, name, table):
    """A[i, j] for backbone ``name`` computed term by term with Python loops, per head."""
    config = layer.config
    heads, dh = layer.heads, layer.head_width
    k = config.max_relative_distance
    q = layer.query[name](inputs[name])[0].view(-1, heads, dh)  # [S, h, dh]
    keys = {n: layer.key[n](x)[0].view(-1, heads, dh) for n, x in inputs.items()}
    qr = layer.position_query(table).view(-1, heads, dh)  # [2k, h, dh]
    kr = layer.position_key(table).view(-1, heads, dh)
    length = q.shape[0]
    terms = layer.active_terms()
    out = torch.zeros(heads, length, length)
    for h in range(heads):
        for i in range(length):
            for j in range(length):
                value = 0.0
                if "self" in terms:
                    value += q[i, h] @ keys[name][j, h]
                if "cross" in terms:
                    others = [q[i, h] @ keys[o][j, h] for o in inputs if o != name]
                    value += sum(others) / (len(others) if config.cross_reduce == "mean" else 1)
                if "c2p" in terms:
                    value += q[i, h] @ kr[min(max(i - j, -k), k - 1) + k, h]
                if "p2c" in terms:
                    value += keys[name][j, h] @ qr[min(max(j - i, -k), k - 1) + k, h]
                out[h, i, j] = value / math.sqrt(len(terms) * dh)
    return out


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"cross_reduce": "sum"},
        {"cross_content": False},
        {"content_to_position": False, "position_to_content": False},
        {"content_to_content": False, "cross_content": False},
    ],
)
def test_attention_maps_match_a_loop_implementation(switches):
    torch.manual_seed(0)
    config = replace(ModelConfig(width=8, heads=2, max_relative_distance=2, dropout=0.0), **switches)
    model = AnomalyModel({"i3d": 5, "s3d": 4, "clip": 3}, config).eval()
    inputs = {"i3d": torch.randn(1, 7, 5), "s3d": torch.randn(1, 7, 4), "clip": torch.randn(1, 7, 3)}
    hidden = {n: model.projection[n](x) for n, x in inputs.items()}
    layer = model.layers[0]
    with torch.no_grad():
        queries = {n: layer._split(layer.query[n](x)) for n, x in hidden.items()}
        keys = {n: layer._split(layer.key[n](x)) for n, x in hidden.items()}
        pq = layer._split(layer.position_query(model.position_table)[None])
        pk = layer._split(layer.position_key(model.position_table)[None])
        for name in NAMES:
            fast = layer.attention_logits(queries, keys, name, pq, pk)[0]
            slow = loop_logits(layer, hidden, name, model.position_table)
            torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
        output = model(inputs, return_attention=True)
    attention = output.attention["i3d"]
    torch.testing.assert_close(attention.sum(-1), torch.ones(1, 2, 7))
    assert output.scores.shape == (1, 7)
    with torch.no_grad():  # the scores are the head's sigmoid of the fused features the model returns
        torch.testing.assert_close(output.scores, torch.sigmoid(model.head(output.features)).squeeze(-1))
    assert output.features.shape == (1, 7, 8)  # the mean of the three views (fusion="mean")
    concat = AnomalyModel({"i3d": 5, "s3d": 4, "clip": 3}, replace(config, fusion="concat")).eval()
    assert concat(inputs).features.shape == (1, 7, 3 * 8)


def test_student_attention_has_no_cross_term_and_any_length_works():
    model = AnomalyModel({"i3d": 6}, ModelConfig(width=8, heads=2, dropout=0.0)).eval()
    assert model.layers[0].active_terms() == ["self", "c2p", "p2c"]
    with torch.no_grad():
        for length in (1, 5, 32, 100):
            assert model({"i3d": torch.randn(2, length, 6)}).scores.shape == (2, length)


def test_baseline_without_tam_concatenates_projections():
    model = AnomalyModel({"i3d": 6, "clip": 4}, ModelConfig(width=8, tam="none", fusion="concat"))
    assert len(model.layers) == 0 and model.feature_dim == 16
    with torch.no_grad():
        out = model({"i3d": torch.randn(3, 32, 6), "clip": torch.randn(3, 32, 4)})
    assert out.features.shape == (3, 32, 16)


def test_the_model_does_not_depend_on_the_batch():
    torch.manual_seed(1)
    model = AnomalyModel({"i3d": 6, "clip": 4}, ModelConfig(width=8, heads=2)).eval()
    x = {"i3d": torch.randn(4, 10, 6), "clip": torch.randn(4, 10, 4)}
    with torch.no_grad():
        together = model(x).scores
        alone = model({k: v[2:3] for k, v in x.items()}).scores
    torch.testing.assert_close(together[2:3], alone)


def test_view_dropout_zeroes_whole_views_of_a_video_keeps_one_and_only_in_training():
    torch.manual_seed(0)
    model = AnomalyModel({"i3d": 6, "clip": 4, "flow": 3}, ModelConfig(width=8, heads=2, view_dropout=1.0))
    hidden = {n: torch.ones(64, 5, 8) for n in ("i3d", "clip", "flow")}
    dropped = model.drop_views(hidden)
    kept = torch.stack([dropped[n][:, 0, 0] for n in ("i3d", "clip", "flow")], dim=1)  # [videos, views]
    assert torch.equal(kept.sum(1), torch.ones(64))  # p = 1: exactly one view survives, whole
    assert all(torch.equal(dropped[n].amax(dim=(1, 2)), dropped[n].amin(dim=(1, 2))) for n in dropped)
    half = AnomalyModel({"i3d": 6, "clip": 4}, ModelConfig(width=8, heads=2, view_dropout=0.5))
    share = torch.stack(
        [v[:, 0, 0] for v in half.drop_views({n: torch.ones(4000, 1, 8) for n in ("i3d", "clip")}).values()]
    )
    assert 0.55 < share.mean() < 0.72  # P(kept) = 0.5 + 0.25 * 0.5 (a video that lost both keeps one)
    x = {"i3d": torch.randn(2, 7, 6), "clip": torch.randn(2, 7, 4), "flow": torch.randn(2, 7, 3)}
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x).scores, model(x).scores)  # no dropping at inference
