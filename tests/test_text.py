import json

import pytest
import torch

from core import paths
from core.text import BOT, EOS, USER, collate, encode, encode_batch, load_tokenizer, same_tokenizer, text_ids
from engine_fixtures import toy_tokenizer

GPT2_FILES = paths.data_dir() / "gpt2_tokenizer"


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


def test_tags_alternate_backwards_so_the_reply_is_always_the_bot(tokenizer):
    e = encode(tokenizer, ["Hi there.", "Hello, how are you?", "I lost my job today."], "My dog died last week.",
               "I am so sorry.")
    text = tokenizer.decode(e.input_ids, skip_special_tokens=False)
    assert text.replace(" ", "") == (f"{BOT}Hithere.{USER}Hello,howareyou?{BOT}Ilostmyjobtoday."
                                     f"{USER}Mydogdiedlastweek.{BOT}Iamsosorry.{EOS}")
    assert tokenizer.decode(e.input_ids[e.response_start:], skip_special_tokens=True).strip() == "I am so sorry."
    assert e.input_ids[e.response_start - 1] == tokenizer.convert_tokens_to_ids(BOT)
    assert not e.truncated


def test_without_a_response_the_input_ends_ready_for_generation(tokenizer):
    e = encode(tokenizer, [], "Hi there.")
    assert e.input_ids[0] == tokenizer.convert_tokens_to_ids(USER)
    assert e.input_ids[-1] == tokenizer.convert_tokens_to_ids(BOT)
    assert e.response_start == len(e.input_ids)


def test_truncation_drops_oldest_history_first_and_keeps_the_prompt(tokenizer):
    history = ["I lost my job today.", "I am so sorry to hear that.", "My dog died last week."]
    prompt, response = "I could not sleep last night.", "I am sorry."
    full = encode(tokenizer, history, prompt, response, max_length=512)
    newest_two = encode(tokenizer, history[1:], prompt, response, max_length=512)
    cut = encode(tokenizer, history, prompt, response, max_length=len(full.input_ids) - 1)
    assert cut.truncated and cut.input_ids == newest_two.input_ids  # the oldest utterance went, nothing else
    assert len(cut.input_ids) <= len(full.input_ids) - 1


def test_prompt_is_cut_from_its_start_only_when_it_cannot_fit_alone(tokenizer):
    prompt = "I lost my job today. My dog died last week. My car broke down again."
    whole = encode(tokenizer, ["Hi there."], prompt, "Oh no.", max_length=512)
    prompt_tokens = whole.response_start - 1 - (whole.input_ids.index(tokenizer.convert_tokens_to_ids(USER)) + 1)
    response_tokens = len(whole.input_ids) - whole.response_start
    max_length = prompt_tokens + response_tokens  # two tokens short of user tag + prompt + bot tag + response
    e = encode(tokenizer, ["Hi there."], prompt, "Oh no.", max_length=max_length)
    assert e.truncated and len(e.input_ids) == max_length
    assert e.input_ids[0] == tokenizer.convert_tokens_to_ids(USER)  # history gone, prompt's tag kept
    kept = e.input_ids[1:e.response_start - 1]
    assert kept == whole.input_ids[whole.response_start - 1 - len(kept):whole.response_start - 1]  # its end
    assert e.input_ids[e.response_start:] == whole.input_ids[whole.response_start:]  # the reply is untouched
    with pytest.raises(ValueError, match="max_length 3 leaves no room"):
        encode(tokenizer, [], prompt, "Oh no.", max_length=3)


def test_max_response_tokens_caps_the_reply(tokenizer):
    e = encode(tokenizer, [], "Hi there.", "I am so sorry to hear that.", max_response_tokens=3)
    assert len(e.input_ids) - e.response_start == 3


def test_encode_batch_equals_encode_one_by_one(tokenizer):
    examples = [([], "Hi there.", None), (["Hi there."], "I lost my job today.", "I am so sorry to hear that."),
                (["Hi there.", "Hello, how are you?"], "Hi there.", "Hi there.")]
    batched = encode_batch(tokenizer, examples, max_length=20, max_response_tokens=8)
    assert batched == [encode(tokenizer, h, p, r, max_length=20, max_response_tokens=8) for h, p, r in examples]


@pytest.mark.parametrize("left_pad", [False, True])
def test_collate_pads_and_masks_only_the_response(tokenizer, left_pad):
    short = encode(tokenizer, [], "Hi there.", "Oh no.")
    long = encode(tokenizer, ["Hi there."], "I lost my job today.", "I am so sorry to hear that.")
    batch = collate([short, long], pad_id=tokenizer.pad_token_id, left_pad=left_pad)
    width = len(long.input_ids)
    assert batch["input_ids"].shape == (2, width)
    offset = width - len(short.input_ids) if left_pad else 0
    row = batch["input_ids"][0, offset:offset + len(short.input_ids)].tolist()
    assert row == short.input_ids
    assert batch["attention_mask"][0].sum() == len(short.input_ids)
    mask = batch["response_mask"][0]
    assert mask.sum() == len(short.input_ids) - short.response_start
    assert torch.equal(batch["input_ids"][0][mask.bool()],
                       torch.tensor(short.input_ids[short.response_start:]))
    assert (batch["attention_mask"] >= batch["response_mask"]).all()


def test_trained_tokenizer_round_trips_and_keeps_tags_whole(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    text = "I am so sorry to hear that, how are you?"
    (ids,) = text_ids(loaded, [text])
    assert loaded.decode(ids).strip() == text
    assert loaded.encode(f"{USER}{BOT}", add_special_tokens=False) == loaded.convert_tokens_to_ids([USER, BOT])
    assert loaded.pad_token_id == loaded.eos_token_id == loaded.convert_tokens_to_ids(EOS)
    assert loaded.get_vocab() == tokenizer.get_vocab()


@pytest.mark.skipif(not (GPT2_FILES / "vocab.bpe").is_file(), reason="GPT-2 tokenizer files not present")
def test_gpt2_files_give_gpt2_ids_plus_the_tags():
    tokenizer = load_tokenizer(GPT2_FILES)
    assert text_ids(tokenizer, ["Hello world"]) == [[18435, 995]]  # " Hello", " world" in GPT-2's vocabulary
    assert tokenizer.eos_token_id == 50256
    assert tokenizer.convert_tokens_to_ids([USER, BOT]) == [50257, 50258]
    text = "I'm so sorry... that's awful! 😢"
    assert tokenizer.decode(text_ids(tokenizer, [text])[0]).strip() == text


def test_a_directory_without_tokenizer_files_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer in .*expected tokenizer.json"):
        load_tokenizer(tmp_path)


def test_folders_with_equal_tokenizer_files_share_a_tokenizer_whatever_their_loading_flags(tmp_path, tokenizer):
    for name in ("a", "b", "c", "d"):
        tokenizer.save_pretrained(tmp_path / name)
    config = tmp_path / "c" / "tokenizer_config.json"
    config.write_text(config.read_text().replace("}", ', "model_max_length": 7}', 1))
    flags = tmp_path / "d" / "tokenizer_config.json"
    flags.write_text(json.dumps({**json.loads(flags.read_text()), "local_files_only": True, "is_local": True}))
    assert same_tokenizer(tmp_path / "a", tmp_path / "b")
    assert same_tokenizer(tmp_path / "a", tmp_path / "d")
    assert not same_tokenizer(tmp_path / "a", tmp_path / "c")
    assert not same_tokenizer(tmp_path / "a", tmp_path / "nowhere")
