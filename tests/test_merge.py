"""Model merging: the worked values of mergekit's methods, parameter gradients and filters, every method end to end
on tiny models (reloaded, generating, equal to a direct in-memory computation), the streamed output equal bit for bit
to a load-everything merge, and the refusals (tokenizer, vocabulary, chat template, shape, unknown keys)."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch
from conftest import REPO, run_script, script
from safetensors.torch import load_file, save_file

from distill_core.errors import RecipeError, UserError
from distill_core.recipe import Section, load_recipe
from merging import methods
from merging.config import MergeArguments, check_merge
from merging.inputs import resolve_models
from merging.params import UNSET, check_setting, layer_position, resolve
from merging.plan import plan_jobs
from merging.run import merge_in_memory, run_merge

SECTIONS = [Section("merge", MergeArguments)]


# ---- worked values (REFERENCE_EVAL.md, "Merging") ----


def test_slerp_worked_values():
    out = methods.slerp(0.5, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert torch.allclose(out, torch.tensor([0.70711, 0.70711]), atol=1e-5)
    out = methods.slerp(0.5, torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert torch.allclose(out, torch.tensor([1.41421, 0.70711]), atol=1e-5)
    assert torch.equal(methods.slerp(0.0, torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])), torch.tensor([2.0, 0]))


def test_slerp_colinear_falls_back_to_linear():
    v0, v1 = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.01])  # cos > 0.9995
    assert torch.allclose(methods.slerp(0.25, v0, v1), 0.75 * v0 + 0.25 * v1)
    v1 = torch.tensor([-2.0, 0.0])  # opposite: |cos| = 1
    assert torch.allclose(methods.slerp(0.5, v0, v1), torch.tensor([-0.5, 0.0]))


def test_ties_worked_example():
    base = torch.zeros(4)
    a, b = torch.tensor([0.5, -0.1, 0.3, -0.8]), torch.tensor([-0.4, 0.2, 0.1, 0.6])
    out = methods.delta_merge(methods.DELTA_RULES["ties"], base, [a, b], [1.0, 1.0], [0.5, 0.5], normalize=True)
    assert torch.allclose(out, torch.tensor([0.5, 0.0, 0.0, -0.8]))


def test_model_stock_worked_values():
    base = torch.zeros(2)
    out = methods.model_stock(base, [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])])
    cos = 1 / math.sqrt(2)
    t = 2 * cos / (1 + cos)  # 0.82843
    assert torch.allclose(out, torch.tensor([t * 1.0, t * 0.5]), atol=1e-6)
    assert torch.allclose(out, torch.tensor([0.82843, 0.41421]), atol=1e-5)
    orthogonal = methods.model_stock(base + 1, [torch.tensor([2.0, 1.0]), torch.tensor([1.0, 2.0])])
    assert torch.allclose(orthogonal, base + 1)  # cos 0: t = 0, the base


def test_dare_is_seeded_and_keeps_about_density():
    base, tuned = torch.zeros(10000), torch.ones(10000)
    rule = methods.DELTA_RULES["dare_linear"]
    one = methods.delta_merge(rule, base, [tuned], [1.0], [0.3], normalize=False, seed=7, name="w")
    again = methods.delta_merge(rule, base, [tuned], [1.0], [0.3], normalize=False, seed=7, name="w")
    other = methods.delta_merge(rule, base, [tuned], [1.0], [0.3], normalize=False, seed=8, name="w")
    assert torch.equal(one, again) and not torch.equal(one, other)
    kept = (one != 0).float().mean().item()
    assert abs(kept - 0.3) < 0.03
    assert torch.allclose(one[one != 0], torch.full_like(one[one != 0], 1 / 0.3))  # the paper's rescale


# ---- parameters: gradients, filters, defaults ----

OPENPIPE_T = [
    {"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
    {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
    {"value": 0.5},
]


def test_openpipe_gradient_over_32_layers():
    setting = check_setting(OPENPIPE_T, "t")
    attn = [resolve(setting, f"model.layers.{i}.self_attn.q_proj.weight", layer_position(i, 32)) for i in range(32)]
    mlp = [resolve(setting, f"model.layers.{i}.mlp.up_proj.weight", layer_position(i, 32)) for i in range(32)]
    assert attn[0] == 0 and attn[31] == 1 and mlp[0] == 1 and mlp[31] == 0
    # layer 8 sits at 8/31 = 0.2581, just past the second knot (0.25 -> 0.5, 0.5 -> 0.3): 0.5 - 0.2 * 0.0323
    assert attn[8] == pytest.approx(0.493548, abs=1e-6)
    assert all(a + m == pytest.approx(1.0) for a, m in zip(attn, mlp))  # the two gradients mirror each other
    for name in ("model.layers.5.input_layernorm.weight", "model.embed_tokens.weight", "lm_head.weight"):
        assert resolve(setting, name, layer_position(None, 32)) == 0.5


def test_filters_first_match_wins_and_default_entry_anywhere():
    setting = check_setting(
        [{"value": 0.1}, {"filter": "q_proj", "value": 0.9}, {"filter": "proj", "value": 0.4}], "t"
    )
    assert resolve(setting, "model.layers.0.self_attn.q_proj.weight", 0.0) == 0.9
    assert resolve(setting, "model.layers.0.mlp.up_proj.weight", 0.0) == 0.4
    assert resolve(setting, "model.norm.weight", 0.0) == 0.1
    assert resolve(check_setting([{"filter": "mlp", "value": 1}], "t"), "model.norm.weight", 0.0) is UNSET
    assert resolve(check_setting([0.0, 1.0], "t"), "lm_head.weight", layer_position(None, 4)) == 0.0
    with pytest.raises(RecipeError, match="did you mean 'filter'"):
        check_setting([{"filtr": "mlp", "value": 1}], "t")


# ---- tiny models ----


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Three tiny 4-layer models sharing one tokenizer: the built one and two perturbed copies."""
    from training.smoke_data import corpus_lines
    from training.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("merge")
    base = build_tiny_model(str(root / "base"), corpus_lines(), layers=4, seed=0)
    paths = [base]
    for seed in (1, 2):
        path = root / f"ft{seed}"
        shutil.copytree(base, path)
        state = load_file(os.path.join(base, "model.safetensors"))
        gen = torch.Generator().manual_seed(seed)
        tuned = {k: v + 0.02 * torch.randn(v.shape, generator=gen) for k, v in state.items()}
        save_file(tuned, str(path / "model.safetensors"), metadata={"format": "pt"})
        paths.append(str(path))
    return root, paths


def write_recipe(path, **keys) -> str:
    import yaml

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(keys, f, sort_keys=False)
    return str(path)


def merge(recipe_path: str):
    recipe = load_recipe(recipe_path, [], SECTIONS, check_merge)
    run_merge(recipe)
    return recipe


def states(paths):
    return [load_file(os.path.join(p, "model.safetensors")) for p in paths]


def expected_merge(method: str, base: dict, tuned: list[dict], name: str) -> torch.Tensor:
    """A direct computation of each method on whole tensors, written independently of merging.methods."""
    b, ts = base[name].double(), [t[name].double() for t in tuned]
    if method == "linear":
        return (0.7 * ts[0] + 0.3 * ts[1]) / 1.0
    if method == "slerp":
        a, c = b.flatten() / b.norm(), ts[0].flatten() / ts[0].norm()
        if torch.dot(a, c).abs() > 0.9995:  # near-colinear (the norms' weights): linear interpolation
            return 0.3 * b + 0.7 * ts[0]
        theta = torch.arccos(torch.dot(a, c))
        return (torch.sin(0.3 * theta) * b + torch.sin(0.7 * theta) * ts[0]) / torch.sin(theta)
    if method in ("task_arithmetic", "dare_linear"):  # dare at density 1 drops nothing
        return b + 0.8 * (0.7 * (ts[0] - b) + 0.3 * (ts[1] - b))
    if method == "ties":
        deltas = []
        for t, w in zip(ts, (0.7, 0.3)):
            d = (t - b).flatten()
            keep = d.abs().argsort(descending=True)[: int(0.5 * d.numel())]
            sparse = torch.zeros_like(d)
            sparse[keep] = d[keep]
            deltas.append(w * sparse)
        total = deltas[0] + deltas[1]
        sign = torch.where(total >= 0, 1.0, -1.0).double()
        num = sum(d * (d.sign() == sign) for d in deltas)
        den = sum(w * (d.sign() == sign) for d, w in zip(deltas, (0.7, 0.3)))
        return b + 0.8 * (num / torch.where(den == 0, torch.ones_like(den), den)).reshape(b.shape)
    if method == "model_stock":
        o1, o2 = (ts[0] - b).flatten(), (ts[1] - b).flatten()
        cos = torch.dot(o1, o2) / (o1.norm() * o2.norm())
        t = 2 * cos / (1 + cos)
        return t * (ts[0] + ts[1]) / 2 + (1 - t) * b
    raise AssertionError(method)


METHOD_KEYS = {
    "linear": dict(
        models=[{"model": "FT1", "parameters": {"weight": 0.7}}, {"model": "FT2", "parameters": {"weight": 0.3}}]
    ),
    "slerp": dict(models=[{"model": "BASE"}, {"model": "FT1"}], parameters={"t": 0.7}),
    "task_arithmetic": dict(parameters={"lambda": 0.8}),
    "ties": dict(parameters={"lambda": 0.8, "density": 0.5}),
    "dare_linear": dict(parameters={"lambda": 0.8, "density": 1.0}),
    "model_stock": dict(models=[{"model": "FT1"}, {"model": "FT2"}]),
}


@pytest.mark.parametrize("method", list(METHOD_KEYS))
def test_each_method_end_to_end(tiny, method, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, (base, ft1, ft2) = tiny
    keys = json.loads(json.dumps(METHOD_KEYS[method]).replace("BASE", base).replace("FT1", ft1).replace("FT2", ft2))
    keys.setdefault(
        "models", [{"model": ft1, "parameters": {"weight": 0.7}}, {"model": ft2, "parameters": {"weight": 0.3}}]
    )
    out = tmp_path / "out"
    merge(
        write_recipe(
            tmp_path / "m.yaml", merge_method=method, base_model=base, dtype="float32", output_dir=str(out), **keys
        )
    )
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    b, t1, t2 = states([base, ft1, ft2])
    for name, tensor in model.state_dict().items():
        want = expected_merge(method, b, [t1, t2], name).float()
        assert torch.allclose(tensor, want, atol=1e-6, rtol=0), name
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(base).chat_template
    ids = tokenizer("hello", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape[1] == ids.shape[1] + 4
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    card = (out / "README.md").read_text()
    assert method in card and ft1 in card and "Peak resident memory" in card


def test_streamed_output_equals_in_memory_bit_for_bit(tiny, tmp_path):
    _, (base, ft1, ft2) = tiny
    out = tmp_path / "out"
    path = write_recipe(
        tmp_path / "m.yaml", merge_method="dare_ties", base_model=base, dtype="bfloat16", output_dir=str(out), seed=3,
        models=[{"model": ft1, "parameters": {"weight": [1.0, 0.2]}}, {"model": ft2, "parameters": {"weight": 0.5}}],
        parameters={"density": [{"filter": "mlp", "value": 0.3}, {"value": 0.6}]}, max_shard_size_mb=0.1,
    )  # fmt: skip
    recipe = merge(path)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    streamed = {k: v for shard in shards for k, v in load_file(str(out / shard)).items()}
    spec = recipe.parsed["merge"]
    models = resolve_models(spec.models, str(tmp_path), None)
    reference = merge_in_memory(spec, models, plan_jobs(spec, models), "bfloat16", 3)
    assert streamed.keys() == reference.keys()
    for name in reference:
        assert streamed[name].dtype == torch.bfloat16 and torch.equal(streamed[name], reference[name]), name


def test_dry_run_prints_resolved_parameters_and_writes_nothing(tiny, tmp_path):
    _, (base, ft1, _) = tiny
    out = tmp_path / "out"
    path = write_recipe(
        tmp_path / "m.yaml", merge_method="slerp", base_model=base, output_dir=str(out), dry_run=True,
        slices=[{"sources": [{"model": base, "layer_range": [0, 4]}, {"model": ft1, "layer_range": [0, 4]}]}],
        parameters={"t": OPENPIPE_T},
    )  # fmt: skip
    result = run_script([os.sys.executable, script("run_merge.py"), path], cwd=REPO)
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert "model.layers.0.self_attn.q_proj.weight  slerp  t=0" in lines
    assert "model.layers.3.self_attn.q_proj.weight  slerp  t=1" in lines
    assert "model.layers.1.mlp.up_proj.weight  slerp  t=0.566667" in lines  # 1/3 of the way: 0.5 + 0.2 * 1/3
    assert "model.norm.weight  slerp  t=0.5" in lines
    assert not out.exists()


# ---- refusals ----


def refused(tmp_path, tiny, other: str, **keys) -> str:
    _, (base, _, _) = tiny
    path = write_recipe(
        tmp_path / "m.yaml", merge_method="linear", output_dir=str(tmp_path / "out"),
        models=[{"model": base, "parameters": {"weight": 1}}, {"model": other, "parameters": {"weight": 1}}], **keys,
    )  # fmt: skip
    with pytest.raises(UserError) as err:
        merge(path)
    assert not (tmp_path / "out" / "config.json").exists()
    return str(err.value)


def variant(tiny, tmp_path, name: str) -> str:
    _, (base, _, _) = tiny
    path = tmp_path / name
    shutil.copytree(base, path)
    return str(path)


def test_chat_template_mismatch_refused_unless_tokenizer_source(tiny, tmp_path):
    other = variant(tiny, tmp_path, "other")
    with open(os.path.join(other, "chat_template.jinja"), "a", encoding="utf-8") as f:
        f.write("{# changed #}")
    assert "chat template differs" in refused(tmp_path, tiny, other)
    _, (base, _, _) = tiny
    path = write_recipe(
        tmp_path / "ok.yaml", merge_method="linear", output_dir=str(tmp_path / "ok"), tokenizer_source=other,
        models=[{"model": base, "parameters": {"weight": 1}}, {"model": other, "parameters": {"weight": 1}}],
    )  # fmt: skip
    merge(path)
    assert (tmp_path / "ok" / "chat_template.jinja").read_text().endswith("{# changed #}")


def test_vocabulary_and_special_token_mismatches_refused(tiny, tmp_path):
    swapped = variant(tiny, tmp_path, "swapped")
    tok_path = os.path.join(swapped, "tokenizer.json")
    data = json.load(open(tok_path, encoding="utf-8"))
    vocab = data["model"]["vocab"]
    a, b = [k for k, v in vocab.items() if v in (100, 101)]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    json.dump(data, open(tok_path, "w", encoding="utf-8"))
    assert "vocabulary differs" in refused(tmp_path, tiny, swapped)
    special = variant(tiny, tmp_path, "special")
    config_path = os.path.join(special, "tokenizer_config.json")
    config = json.load(open(config_path, encoding="utf-8"))
    config["eos_token"] = "<unk>"
    json.dump(config, open(config_path, "w", encoding="utf-8"))
    assert "special tokens differs" in refused(tmp_path, tiny, special)


def test_shape_and_architecture_mismatches_refused_even_with_tokenizer_source(tiny, tmp_path):
    wide = variant(tiny, tmp_path, "wide")
    state = load_file(os.path.join(wide, "model.safetensors"))
    state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(5, 64)
    save_file(state, os.path.join(wide, "model.safetensors"), metadata={"format": "pt"})
    message = refused(tmp_path, tiny, wide, tokenizer_source="base")
    assert "differ in the shape of model.layers.0.mlp.up_proj.weight" in message
    arch = variant(tiny, tmp_path, "arch")
    config = json.load(open(os.path.join(arch, "config.json"), encoding="utf-8"))
    config["architectures"] = ["LlamaForCausalLM"]
    json.dump(config, open(os.path.join(arch, "config.json"), "w", encoding="utf-8"))
    assert "differ in architectures" in refused(tmp_path, tiny, arch)


def test_unknown_keys_refused_with_did_you_mean(tiny, tmp_path):
    _, (base, ft1, _) = tiny
    path = write_recipe(tmp_path / "m.yaml", merge_methd="slerp", models=[{"model": base}])
    result = run_script([os.sys.executable, script("run_merge.py"), path], cwd=REPO)
    assert result.returncode == 2 and "did you mean 'merge_method'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    bad_param = write_recipe(
        tmp_path / "p.yaml", merge_method="ties", base_model=base, parameters={"densty": 0.5},
        models=[{"model": ft1, "parameters": {"weight": 1}}],
    )  # fmt: skip
    with pytest.raises(RecipeError, match="unknown parameter 'densty' for ties; did you mean 'density'"):
        load_recipe(bad_param, [], SECTIONS, check_merge)
    bad_entry = write_recipe(tmp_path / "e.yaml", merge_method="linear", models=[{"modle": base}])
    with pytest.raises(RecipeError, match="did you mean 'model'"):
        load_recipe(bad_entry, [], SECTIONS, check_merge)


def test_merge_is_a_pipeline_stage_kind(tmp_path, monkeypatch):
    from distill_core.pipeline import load_pipeline
    from distill_core.pipeline.commands import command

    monkeypatch.chdir(REPO)
    path = write_recipe(
        tmp_path / "pipeline.yaml", run_dir=str(tmp_path / "run"),
        stages={"merge": {"recipe": "recipes/smoke/merge.yaml", "overrides": {"seed": 1}}},
    )  # fmt: skip
    pipeline = load_pipeline(path)
    stage = pipeline.stages["merge"]
    assert stage.kind == "merge" and stage.launch is None
    line = command(pipeline, stage)
    assert line[1].endswith(os.path.join("scripts", "run_merge.py")) and "--output_dir" in line and "--seed" in line


def test_smoke_merge_recipe_validates(monkeypatch):
    monkeypatch.chdir(REPO)
    recipe = load_recipe("recipes/smoke/merge.yaml", ["--dry_run"], SECTIONS, check_merge)
    spec = recipe.parsed["merge"]
    assert spec.method == "slerp" and spec.base == "runs/smoke/tiny-model" and len(spec.models) == 2


def test_lora_adapter_input_is_merged_into_its_base_first(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training.merge import merge_lora_adapter

    _, (base, ft1, _) = tiny
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # a trained adapter: B is no longer zero
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    want = {k: v.clone() for k, v in peft_model.merge_and_unload().state_dict().items()}
    path = write_recipe(
        tmp_path / "m.yaml", merge_method="linear", dtype="float32", output_dir=str(tmp_path / "out"),
        models=[{"model": str(adapter), "parameters": {"weight": 0.5}}, {"model": ft1, "parameters": {"weight": 0.5}}],
    )  # fmt: skip
    run_merge(load_recipe(path, [], SECTIONS, check_merge), merge_adapter=merge_lora_adapter)
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "out").state_dict()
    other = load_file(os.path.join(ft1, "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(want[name], load_file(os.path.join(base, "model.safetensors"))[name])
    assert torch.allclose(got[name], 0.5 * want[name] + 0.5 * other[name], atol=1e-6)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".merge-inputs-")]  # the scratch copy is gone
