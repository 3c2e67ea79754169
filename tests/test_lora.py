"""LoRA adapters on a pretrained base, with a 2-block Llama standing in for SmolLM2: the chat layout, MLE that
trains only the adapter, GAIL whose KL reference is the MLE adapter on the same base, export and the registry's
shared base."""

import pytest
import torch
from safetensors.torch import load_file

from core.engine.checkpoint import export_model
from core.engine.gail import REFERENCE_ADAPTER, GAILConfig, GAILTrainer, train_gail
from core.engine.mle import MLEConfig, train_mle
from core.engine.rollout import action_logprobs
from core.engine.runtime import create_accelerator, seed_everything
from core.models.discriminator import DiscriminatorConfig
from core.models.encoder import EncoderConfig
from core.models.generator import (Decoding, GeneratorConfig, LoraSettings, build_generator, generate, load_generator,
                                   load_model_tokenizer, response_logprobs, using_adapter)
from core.models.card import ModelCard, model_version, write_base_card
from core.registry import load_responder
from core.text import SYSTEM_PROMPT, collate, encode, encode_batch, load_tokenizer
from engine_fixtures import EXCHANGES, tiny_llama_base, toy_chat_tokenizer, toy_trajectories

LORA = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
                    top_layers=1)
FITTING = LoraSettings(r=8, alpha=16, dropout=0.0, top_layers=None)  # every block, every linear layer: the toy MLE
CONTEXTS = [([], p) for p, _ in EXCHANGES[:4]] + [(["Hi there.", "Hello, how are you?"], EXCHANGES[4][0])]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return tiny_llama_base(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module")
def data():
    return toy_trajectories(copies=4)


@pytest.fixture(scope="module")
def mle_dir(base_dir, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("mle")
    config = MLEConfig(name="toy-mle", generator=GeneratorConfig(name_or_path=str(base_dir), lora=FITTING),
                       run_dir=str(root / "run"), output_dir=str(root / "model"), steps=30, batch_size=8,
                       max_length=96, lr=1e-2, warmup_steps=2, eval_every=30, eval_batches=1, log_every=10,
                       checkpoint_every=30, export_dtype="float32")
    seed_everything(0)
    return train_mle(config, dataset=data)


def _expert_logp(model, tokenizer) -> float:
    batch = collate(encode_batch(tokenizer, [([], p, r) for p, r in EXCHANGES], 96), tokenizer.pad_token_id)
    with torch.no_grad():
        return response_logprobs(model, **batch).sum().item()


def test_the_chat_layout_is_the_base_chat_template_token_for_token():
    tokenizer = toy_chat_tokenizer()
    history, prompt, reply = ["Hi there.", "Hello, how are you?"], "I lost my job today.", "I am so sorry."
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": history[0]},
                {"role": "assistant", "content": history[1]}, {"role": "user", "content": prompt},
                {"role": "assistant", "content": reply}]
    expected = tokenizer.apply_chat_template(messages, tokenize=False)
    encoded = encode(tokenizer, history, prompt, reply)
    # The template closes every turn with a newline; the reply, an action, ends at its end token.
    assert tokenizer.decode(encoded.input_ids) + "\n" == expected
    assert tokenizer.decode(encoded.input_ids[encoded.response_start:]) == reply + "<|im_end|>"
    assert len(load_tokenizer_like(tokenizer)) == len(tokenizer)  # no speaker tags are added to a chat vocabulary


def load_tokenizer_like(tokenizer):
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_pretrained(directory)
        return load_tokenizer(directory)


def test_the_oldest_turns_go_first_when_a_chat_context_is_too_long():
    tokenizer = toy_chat_tokenizer()
    history = ["Hi there.", "Hello, how are you?"] * 6
    full = encode(tokenizer, history, "I lost my job today.")
    cut = encode(tokenizer, history, "I lost my job today.", max_length=len(full.input_ids) - 5)
    assert cut.truncated and not full.truncated and len(cut.input_ids) <= len(full.input_ids) - 5
    text = tokenizer.decode(cut.input_ids)
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT) and text.endswith(
        "<|im_start|>user\nI lost my job today.<|im_end|>\n<|im_start|>assistant\n")


def test_mle_trains_only_the_adapter_and_exports_it_alone(base_dir, mle_dir):
    files = {p.name for p in mle_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "model_card.json", "checksums.json"} <= files
    assert "model.safetensors" not in files  # the base is named, not copied
    card = ModelCard.load(mle_dir)
    assert card.base == {"name": str(base_dir)} and card.steps == 30
    tokenizer = load_tokenizer(base_dir)
    base = load_generator(base_dir)
    tuned = load_generator(mle_dir)
    assert _expert_logp(tuned, tokenizer) > _expert_logp(base, tokenizer) + 20
    with using_adapter(tuned, None):  # the base under the adapter is untouched
        assert _expert_logp(tuned, tokenizer) == pytest.approx(_expert_logp(base, tokenizer), abs=1e-3)


def test_mle_goes_on_from_a_trained_adapter_and_records_it(base_dir, mle_dir, data, tmp_path):
    tokenizer = load_tokenizer(base_dir)
    config = MLEConfig(name="toy-mle-2", init_from=str(mle_dir), run_dir=str(tmp_path / "run"),
                       output_dir=str(tmp_path / "model"), steps=1, batch_size=8, max_length=96, lr=1e-9,
                       warmup_steps=0, eval_every=1, eval_batches=1, log_every=1, checkpoint_every=1,
                       export_dtype="float32", seed=1)
    seed_everything(0)
    out = train_mle(config, dataset=data)
    # a step too small to move it: it starts from the trained adapter, not from fresh (zero) LoRA weights
    assert _expert_logp(load_generator(out), tokenizer) == pytest.approx(
        _expert_logp(load_generator(mle_dir), tokenizer), abs=1e-2)
    card, first = ModelCard.load(out), ModelCard.load(mle_dir)
    assert card.base == {"name": str(base_dir)} and card.steps == 1
    assert card.started_from == {"name": "toy-mle", "algorithm": "mle", "steps": 30, "wall_time_s": first.wall_time_s,
                                 "created": first.created, "version": model_version(mle_dir)}


def test_an_adapter_round_trips_through_export(base_dir, tmp_path):
    tokenizer = load_tokenizer(base_dir)
    model = build_generator(GeneratorConfig(name_or_path=str(base_dir), lora=LORA), tokenizer).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # fresh adapters start as the identity; this one must change the logits
    card = ModelCard(name="toy", algorithm="mle")
    for dtype, tolerance in (("float32", 1e-5), ("float16", 2e-2)):
        out = export_model(model, tokenizer, card, tmp_path / dtype, dtype=dtype)
        stored = load_file(str(out / "adapter_model.safetensors"))
        assert {t.dtype for t in stored.values()} == {getattr(torch, dtype)}
        assert all("lora_" in key and ".layers.1." in key for key in stored)  # the top block only
        loaded = load_generator(out)
        assert _expert_logp(loaded, tokenizer) == pytest.approx(_expert_logp(model, tokenizer), abs=tolerance * 50)
        assert _expert_logp(loaded, tokenizer) != pytest.approx(_expert_logp(load_generator(base_dir), tokenizer),
                                                                abs=1.0)


def test_an_adapter_leaves_its_bases_tokenizer_to_the_base_and_keeps_one_of_its_own(base_dir, tmp_path):
    tokenizer = load_tokenizer(base_dir)
    model = build_generator(GeneratorConfig(name_or_path=str(base_dir), lora=LORA), tokenizer).eval()
    card = ModelCard(name="toy", algorithm="mle")
    out = export_model(model, tokenizer, card, tmp_path / "same")
    assert not (out / "tokenizer.json").exists() and not (out / "tokenizer_config.json").exists()
    text = "I lost my job today."
    assert load_model_tokenizer(out)(text)["input_ids"] == tokenizer(text)["input_ids"]

    tokenizer.model_max_length = 77
    out = export_model(model, tokenizer, card, tmp_path / "own")
    assert (out / "tokenizer.json").is_file()
    assert load_model_tokenizer(out).model_max_length == 77


def _gail_config(tmp_path, mle_dir, base_dir, **overrides) -> GAILConfig:
    encoder = EncoderConfig(name_or_path="scratch", tokenizer=str(base_dir), n_layer=1, n_embd=32, n_head=2,
                            max_length=64, dropout=0.0)
    values = dict(name="toy-gail", init_from=str(mle_dir), run_dir=str(tmp_path / "run"),
                  output_dir=str(tmp_path / "out"), steps=3, sample_batch_size=8, buffer_size=16, minibatch_size=8,
                  d_batch_size=8, d_pretrain_steps=2, warmup_steps=0, demo_warmup_steps=1, lr=1e-2,
                  lr_discriminator=1e-3, eval_every=3, eval_samples=8, kl_coef=0.1,
                  decoding=Decoding(max_new_tokens=8), checkpoint_every=100, emotion_shaping=False,
                  emotion_model=None, export_dtype="float32",
                  discriminator=DiscriminatorConfig(encoder=encoder, mode="binary", use_history=True,
                                                    use_emotion_features=False, emotion_model=None))
    values.update(overrides)
    return GAILConfig(**values)


def test_gail_keeps_the_mle_adapter_as_its_reference_while_the_policy_moves(tmp_path, base_dir, mle_dir, data):
    config = _gail_config(tmp_path, mle_dir, base_dir)
    seed_everything(0)
    trainer = GAILTrainer(config, data, create_accelerator())
    models = trainer.models
    assert models.reference is models.raw_generator  # the same base: no second copy
    tokenizer = models.tokenizer
    sequences = encode_batch(tokenizer, [(h, p, r) for (h, p), (_, r) in zip(CONTEXTS, EXCHANGES)], 96)
    mle = load_generator(mle_dir)
    expected = action_logprobs(mle, sequences, tokenizer.pad_token_id, mle.device)
    base_before = {n: p.detach().clone() for n, p in models.raw_generator.named_parameters() if "lora_" not in n}
    for iteration in range(config.iterations):
        trainer.step(iteration)
    with using_adapter(models.reference, REFERENCE_ADAPTER):
        reference = action_logprobs(models.reference, sequences, tokenizer.pad_token_id, mle.device)
    policy = action_logprobs(models.raw_generator, sequences, tokenizer.pad_token_id, mle.device)
    assert all(torch.allclose(r, e, atol=1e-5) for r, e in zip(reference, expected))
    assert max((p - e).abs().max().item() for p, e in zip(policy, expected)) > 1e-3
    assert models.raw_generator.active_adapter == "default"
    assert all(torch.equal(p, base_before[n]) for n, p in models.raw_generator.named_parameters() if "lora_" not in n)


def test_a_gail_run_exports_its_adapter_and_discriminator(tmp_path, base_dir, mle_dir, data):
    seed_everything(0)
    out = train_gail(_gail_config(tmp_path, mle_dir, base_dir), dataset=data)
    assert (out / "adapter_model.safetensors").is_file() and (out / "discriminator").is_dir()
    assert not (out / "model.safetensors").exists()
    card = ModelCard.load(out)
    assert card.base == {"name": str(base_dir)}
    assert card.started_from["version"] == model_version(mle_dir) and card.started_from["algorithm"] == "mle"
    assert load_responder(out).respond([], "I lost my job today.", Decoding(max_new_tokens=8)) is not None


def test_the_registry_serves_every_adapter_and_the_base_from_one_copy(tmp_path, base_dir, mle_dir):
    tokenizer = load_tokenizer(base_dir)
    other = build_generator(GeneratorConfig(name_or_path=str(base_dir), lora=LORA), tokenizer).eval()
    with torch.no_grad():
        for name, parameter in other.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    other_dir = export_model(other, tokenizer, ModelCard(name="other", algorithm="mle"), tmp_path / "other",
                             dtype="float32")
    zero_shot = write_base_card(tmp_path / "base-card", name=str(base_dir))
    responders = [load_responder(path) for path in (mle_dir, other_dir, zero_shot)]
    assert responders[0].shared is responders[1].shared is responders[2].shared
    greedy = Decoding(do_sample=False, max_new_tokens=10)
    alone = [generate(load_generator(path), tokenizer, CONTEXTS, greedy).texts for path in (mle_dir, other_dir)]
    alone.append(generate(load_generator(base_dir), tokenizer, CONTEXTS, greedy).texts)
    for _ in range(2):  # in any order, each answers as it does alone
        for responder, expected in zip(responders, alone):
            assert responder.respond_batch(CONTEXTS, greedy) == expected
    assert len({tuple(texts) for texts in alone}) == 3
