import pytest
import torch

from core.models.generator import (Decoding, GeneratorConfig, build_generator, generate, generate_encoded,
                                   response_logprobs)
from core.text import USER, collate, encode, reply_text
from engine_fixtures import TINY_GENERATOR, tiny_generator, toy_tokenizer

CONTEXTS = [([], "Hi there."), (["Hi there.", "Hello, how are you?"], "I lost my job today."),
            (["My dog died last week."], "I could not sleep last night.")]


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return tiny_generator(tokenizer).eval()


def test_build_generator_follows_the_config_and_the_tokenizer(tokenizer):
    model = build_generator(GeneratorConfig(n_layer=3, n_embd=48, n_head=4, n_positions=80), tokenizer)
    assert (model.config.n_layer, model.config.n_embd, model.config.n_positions) == (3, 48, 80)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert model.config.layer_norm_epsilon == 1e-5


def test_generate_returns_context_plus_reply_and_stops_at_a_stop_token(model, tokenizer):
    out = generate(model, tokenizer, CONTEXTS, Decoding(max_new_tokens=12, seed=1))
    stop = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(USER)}
    for (history, prompt), sequence, text in zip(CONTEXTS, out.sequences, out.texts):
        context = encode(tokenizer, history, prompt, max_length=64 - 12)
        assert sequence.input_ids[:sequence.response_start] == context.input_ids
        action = sequence.input_ids[sequence.response_start:]
        assert 1 <= len(action) <= 12
        assert not stop & set(action[:-1])  # only the last action token may end the reply
        assert text == reply_text(tokenizer, [t for t in action if t not in stop])
        assert "\ufffd" not in text  # a reply cut mid-character shows no replacement characters


def test_seeded_sampling_repeats_without_touching_the_global_stream(model, tokenizer):
    decoding = Decoding(max_new_tokens=10, seed=3, temperature=1.5, top_p=1.0)
    torch.manual_seed(123)
    first = generate(model, tokenizer, CONTEXTS, decoding).texts
    after_seeded = torch.rand(1)
    torch.manual_seed(123)
    assert generate(model, tokenizer, CONTEXTS, decoding).texts == first
    assert torch.equal(torch.rand(1), after_seeded)


def test_unseeded_rollouts_differ_from_call_to_call(model, tokenizer):
    decoding = Decoding(max_new_tokens=10, temperature=1.5, top_p=1.0)
    torch.manual_seed(0)
    first = [s.input_ids for s in generate(model, tokenizer, CONTEXTS * 2, decoding).sequences]
    second = [s.input_ids for s in generate(model, tokenizer, CONTEXTS * 2, decoding).sequences]
    assert first != second


def test_logprobs_of_a_greedy_reply_are_the_models_best_choice_at_every_step(model, tokenizer):
    out = generate(model, tokenizer, CONTEXTS, Decoding(do_sample=False, max_new_tokens=10))
    batch = collate(out.sequences, tokenizer.pad_token_id)
    with torch.no_grad():
        logp = response_logprobs(model, **batch)
        best = torch.log_softmax(model(input_ids=batch["input_ids"],
                                       attention_mask=batch["attention_mask"]).logits[:, :-1], dim=-1).max(-1).values
    mask = batch["response_mask"][:, 1:].bool()
    # The appended end token after a <|user|> stop was not the model's choice; every other action token was.
    chosen = mask & (batch["input_ids"][:, 1:] != tokenizer.eos_token_id)
    assert chosen.sum() > 0
    torch.testing.assert_close(logp[chosen], best[chosen], atol=1e-4, rtol=1e-4)
    assert (logp[~mask] == 0).all()


def test_logprobs_sum_equals_the_models_own_sum_per_sequence_whatever_the_padding(model, tokenizer):
    sequences = generate(model, tokenizer, CONTEXTS, Decoding(max_new_tokens=8, seed=0)).sequences
    batch = collate(sequences, tokenizer.pad_token_id)
    with torch.no_grad():
        batched = response_logprobs(model, **batch).sum(dim=1)
        for row, s in enumerate(sequences):
            ids = torch.tensor([s.input_ids])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
            targets = ids[0, 1:]
            expected = logp[torch.arange(len(targets)), targets][s.response_start - 1:].sum()
            torch.testing.assert_close(batched[row], expected, atol=1e-4, rtol=1e-4)


def test_logprobs_carry_gradients_for_ppo(model, tokenizer):
    encoded = [encode(tokenizer, h, p, "I am so sorry.") for h, p in CONTEXTS]
    batch = collate(encoded, tokenizer.pad_token_id)
    model.zero_grad()
    response_logprobs(model, **batch).sum().backward()
    assert model.transformer.wte.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_static_cache_samples_the_same_replies(tokenizer):
    torch.manual_seed(0)
    model = tiny_generator(tokenizer, TINY_GENERATOR).eval()
    encoded = [encode(tokenizer, h, p) for h, p in CONTEXTS]
    plain = generate_encoded(model, tokenizer, encoded, Decoding(do_sample=False, max_new_tokens=6))
    static = generate_encoded(model, tokenizer, encoded,
                              Decoding(do_sample=False, max_new_tokens=6, cache_implementation="static"))
    assert [s.input_ids for s in static.sequences] == [s.input_ids for s in plain.sequences]


def test_the_output_layer_reads_a_contiguous_input_in_a_batched_generate(model, tokenizer):
    seen = []  # a forward hook sees the input after every pre-hook has run
    handle = model.get_output_embeddings().register_forward_hook(
        lambda _, args, output: seen.append(args[0].is_contiguous()))
    try:
        generate(model, tokenizer, CONTEXTS, Decoding(do_sample=False, max_new_tokens=3))
    finally:
        handle.remove()
    assert len(seen) == 3 and all(seen)
