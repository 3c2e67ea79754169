"""The RL-Seq2Seq baseline's model (after Fung et al. 2018): an emotion-conditioned GRU encoder-decoder.

The source is the shared text format's context (`<|user|> ... <|bot|>`, oldest history dropped first), the
target the reply and its end token, decoded from `<|bot|>`. The context's emotion class (from the emotion model,
or `unknown` where there is none) is a learned embedding that sets the decoder's initial state and is fed to it
at every step. Attention is Luong's "general" score over a bidirectional GRU encoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PreTrainedTokenizerBase

from core.config import from_dict
from core.data import ED_EMOTIONS
from core.models.emotion import EmotionClassifier
from core.models.generator import Context, Decoding
from core.models.sampling import NucleusSampling
from core.models.storage import stored
from core.text import BOT, VOCAB_SIZE, encode_batch, load_tokenizer, reply_text

CONFIG_FILE = "seq2seq_config.json"
WEIGHTS_FILE = "seq2seq.safetensors"
EMOTION_DIR = "emotion"  # the emotion model that picks the class at inference, saved beside the weights


@dataclass
class Seq2SeqArch:
    """The sizes a user picks; `Seq2SeqConfig` adds what the tokenizer and the emotion model decide."""

    d_embed: int = 128
    d_hidden: int = 256
    d_emotion: int = 32
    n_layers: int = 1
    dropout: float = 0.1
    max_length: int = 256  # context + reply tokens, as the GPT-2 generator's window, so both see the same text
    emotion_turns: int = 1  # the user's earlier utterances read with the prompt when classifying its emotion


@dataclass
class Seq2SeqConfig(Seq2SeqArch):
    vocab_size: int = VOCAB_SIZE
    # The emotion model's labels; one more class, index len(emotions), is `unknown`: contexts without a label,
    # or every context of a model saved without an emotion model.
    emotions: list[str] = field(default_factory=lambda: list(ED_EMOTIONS))
    bos_id: int = 0  # <|bot|>, the tag that opens every reply
    eos_id: int = 0
    pad_id: int = 0

    @property
    def unknown(self) -> int:
        return len(self.emotions)


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_embed)
        self.emotion = nn.Embedding(len(c.emotions) + 1, c.d_emotion)
        layer_dropout = c.dropout if c.n_layers > 1 else 0.0
        self.encoder = nn.GRU(c.d_embed, c.d_hidden, c.n_layers, batch_first=True, bidirectional=True,
                              dropout=layer_dropout)
        self.bridge = nn.Linear(2 * c.d_hidden + c.d_emotion, c.n_layers * c.d_hidden)
        self.decoder = nn.GRU(c.d_embed + c.d_emotion, c.d_hidden, c.n_layers, batch_first=True,
                              dropout=layer_dropout)
        self.attention = nn.Linear(2 * c.d_hidden, c.d_hidden, bias=False)  # score(h, s) = h . W s
        self.combine = nn.Linear(3 * c.d_hidden, c.d_hidden)
        self.head = nn.Linear(c.d_hidden, c.vocab_size)
        self.drop = nn.Dropout(c.dropout)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor, emotion: torch.Tensor) -> tuple:
        """Right-padded source ids -> (memory, attention keys, emotion vector, initial decoder state)."""
        lengths = src_mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.drop(self.embed(src)), lengths, batch_first=True, enforce_sorted=False)
        output, last = self.encoder(packed)
        memory, _ = pad_packed_sequence(output, batch_first=True, total_length=src.shape[1])
        emotion_vec = self.emotion(emotion)
        summary = torch.cat([last[-2], last[-1], emotion_vec], dim=-1)  # top layer, both directions
        state = torch.tanh(self.bridge(summary)).view(len(src), self.config.n_layers, -1).transpose(0, 1)
        return memory, self.attention(memory), emotion_vec, state.contiguous()

    def decode(self, tokens: torch.Tensor, state: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor,
               src_mask: torch.Tensor, emotion_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits for each of `tokens` [batch, steps]; teacher forcing and sampling share it."""
        steps = tokens.shape[1]
        inputs = torch.cat([self.drop(self.embed(tokens)), emotion_vec[:, None].expand(-1, steps, -1)], dim=-1)
        output, state = self.decoder(inputs, state)
        scores = torch.einsum("bth,bsh->bts", output, keys).masked_fill(~src_mask[:, None].bool(), float("-inf"))
        context = torch.softmax(scores, dim=-1) @ memory
        hidden = torch.tanh(self.combine(torch.cat([output, context], dim=-1)))
        return self.head(self.drop(hidden)), state

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, emotion: torch.Tensor,
                tgt_in: torch.Tensor) -> torch.Tensor:
        memory, keys, emotion_vec, state = self.encode(src, src_mask, emotion)
        return self.decode(tgt_in, state, memory, keys, src_mask, emotion_vec)[0]

    def save_pretrained(self, directory: str | Path, dtype: str | None = None) -> None:
        """`dtype` (e.g. "float16") stores the weights in that type; `from_pretrained` loads them into float32."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        save_file(stored(self.state_dict(), dtype), str(directory / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Seq2Seq:
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} is not a seq2seq model directory: {name} is missing")
        model = cls(from_dict(Seq2SeqConfig, json.loads((directory / CONFIG_FILE).read_text())))
        try:
            model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        except RuntimeError as error:
            raise ValueError(f"{directory / WEIGHTS_FILE} does not fit {CONFIG_FILE}: {error}") from error
        return model.to(device).eval()


def build_seq2seq(arch: Seq2SeqArch, tokenizer: PreTrainedTokenizerBase, emotions: Sequence[str]) -> Seq2Seq:
    """A fresh model whose vocabulary and special ids follow `tokenizer` and whose classes are `emotions`."""
    return Seq2Seq(Seq2SeqConfig(**asdict(arch), vocab_size=len(tokenizer), emotions=list(emotions),
                                 bos_id=tokenizer.convert_tokens_to_ids(BOT), eos_id=tokenizer.eos_token_id,
                                 pad_id=tokenizer.pad_token_id))


# --- Emotion classes -------------------------------------------------------------------------------------------

def emotion_text(history: Sequence[str], prompt: str, user_turns: int) -> str:
    """What the emotion model reads for a context: the user's last `user_turns` earlier utterances and the prompt.

    The user's side of the history is every second utterance back from the prompt (history[-2], history[-4], ...);
    the bot's replies are left out, since the class is the user's emotion.
    """
    earlier = list(history)[-2::-2][:user_turns] if user_turns > 0 else []
    return " ".join([*reversed(earlier), prompt])


def context_emotions(config: Seq2SeqConfig, emotion_model: EmotionClassifier,
                     contexts: Sequence[Context]) -> torch.Tensor:
    """The emotion model's distribution over the classes for each context: [len(contexts), len(config.emotions)]."""
    texts = [emotion_text(history, prompt, config.emotion_turns) for history, prompt in contexts]
    return torch.as_tensor(emotion_model.predict_proba(texts)).float().cpu()


def classify_contexts(config: Seq2SeqConfig, emotion_model: EmotionClassifier | None,
                      contexts: Sequence[Context]) -> torch.Tensor:
    """The conditioning class of each context: the emotion model's most likely class, or `unknown` without one."""
    if emotion_model is None:
        return torch.full((len(contexts),), config.unknown, dtype=torch.long)
    return context_emotions(config, emotion_model, contexts).argmax(dim=-1)


def label_classes(config: Seq2SeqConfig, labels: Sequence[str]) -> torch.Tensor:
    """Gold emotion names -> class ids; names outside the model's classes (another label set, "") are unknown."""
    index = {name: i for i, name in enumerate(config.emotions)}
    return torch.tensor([index.get(label, config.unknown) for label in labels], dtype=torch.long)


# --- Batches ---------------------------------------------------------------------------------------------------

@dataclass
class Pair:
    source: list[int]  # context ids, ending with <|bot|>
    target: list[int]  # reply ids (and the end token where the reply ended)
    truncated: bool


def encode_pairs(tokenizer: PreTrainedTokenizerBase, examples: Sequence[tuple[Sequence[str], str, str | None]],
                 max_length: int, max_response_tokens: int | None = None) -> list[Pair]:
    """The shared format's context and reply of each (history, prompt, response-or-None), split where the reply
    starts; one batched tokenizer call for all of them."""
    return [Pair(e.input_ids[:e.response_start], e.input_ids[e.response_start:], e.truncated)
            for e in encode_batch(tokenizer, examples, max_length, max_response_tokens)]


def collate_pairs(pairs: Sequence[Pair], config: Seq2SeqConfig) -> dict[str, torch.Tensor]:
    """Right-padded sources and teacher-forcing targets: `tgt_in` is <|bot|> + target[:-1], `tgt_out` the target."""
    src_width = max(len(p.source) for p in pairs)
    tgt_width = max(1, max(len(p.target) for p in pairs))
    batch = {
        "src": torch.full((len(pairs), src_width), config.pad_id, dtype=torch.long),
        "src_mask": torch.zeros((len(pairs), src_width), dtype=torch.long),
        "tgt_in": torch.full((len(pairs), tgt_width), config.pad_id, dtype=torch.long),
        "tgt_out": torch.full((len(pairs), tgt_width), config.pad_id, dtype=torch.long),
        "tgt_mask": torch.zeros((len(pairs), tgt_width), dtype=torch.long),
    }
    for row, p in enumerate(pairs):
        batch["src"][row, :len(p.source)] = torch.tensor(p.source)
        batch["src_mask"][row, :len(p.source)] = 1
        n = len(p.target)
        if n:
            batch["tgt_in"][row, :n] = torch.tensor([config.bos_id, *p.target[:-1]])
            batch["tgt_out"][row, :n] = torch.tensor(p.target)
            batch["tgt_mask"][row, :n] = 1
    return batch


def target_logprobs(model: Seq2Seq, batch: dict[str, torch.Tensor], emotion: torch.Tensor) -> torch.Tensor:
    """log p(token | context, class, earlier reply tokens) per target token: [batch, steps], zero on padding."""
    logits = model(batch["src"], batch["src_mask"], emotion, batch["tgt_in"])
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch["tgt_out"][..., None]).squeeze(-1)
    return logp * batch["tgt_mask"]


# --- Generation ------------------------------------------------------------------------------------------------

@dataclass
class Seq2SeqGeneration:
    texts: list[str]
    pairs: list[Pair]  # context + sampled reply tokens (through the end token when one was produced)
    emotion: torch.Tensor  # the class each reply was conditioned on


@torch.no_grad()
def generate(model: Seq2Seq, tokenizer: PreTrainedTokenizerBase, contexts: Sequence[Context],
             emotion: torch.Tensor, decoding: Decoding = Decoding()) -> Seq2SeqGeneration:
    """One reply per context, decoded step by step for the whole batch: top-p/temperature sampling or greedy."""
    config, device = model.config, model.device
    sources = encode_pairs(tokenizer, [(h, p, None) for h, p in contexts], config.max_length - decoding.max_new_tokens)
    batch = collate_pairs(sources, config)
    src_mask, emotion = batch["src_mask"].to(device), emotion.to(device)
    memory, keys, emotion_vec, state = model.encode(batch["src"].to(device), src_mask, emotion)
    nucleus = NucleusSampling(decoding.temperature, decoding.top_p)
    rng = None  # without a seed, sample from torch's global generator, which training seeds and checkpoints
    if decoding.seed is not None:
        rng = torch.Generator(device=device).manual_seed(decoding.seed)
    token = torch.full((len(contexts), 1), config.bos_id, dtype=torch.long, device=device)
    done = torch.zeros(len(contexts), dtype=torch.bool, device=device)
    steps = []
    for _ in range(decoding.max_new_tokens):
        logits, state = model.decode(token, state, memory, keys, src_mask, emotion_vec)
        scores = logits[:, -1].float()
        if decoding.do_sample:
            scores = nucleus(token, scores)
            token = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=rng)
        else:
            token = scores.argmax(dim=-1, keepdim=True)
        token = token.masked_fill(done[:, None], config.eos_id)
        steps.append(token)
        done |= token[:, 0] == config.eos_id
        if done.all():
            break
    tokens = torch.cat(steps, dim=1).tolist() if steps else [[] for _ in contexts]
    texts, pairs = [], []
    for source, row in zip(sources, tokens):
        # The end token is part of the action: PPO must learn when to stop, not only what to say.
        action = row[:row.index(config.eos_id) + 1] if config.eos_id in row else row
        texts.append(reply_text(tokenizer, action))
        pairs.append(Pair(source.source, action, source.truncated))
    return Seq2SeqGeneration(texts=texts, pairs=pairs, emotion=emotion.cpu())


@torch.no_grad()
def score_replies(model: Seq2Seq, tokenizer: PreTrainedTokenizerBase, contexts: Sequence[Context],
                  responses: Sequence[str], emotion: torch.Tensor) -> tuple[list[float], list[int]]:
    """Sum of log p over each reply's tokens (its end token included) and the number of those tokens."""
    max_length = model.config.max_length
    pairs = encode_pairs(tokenizer, [(h, p, r) for (h, p), r in zip(contexts, responses)], max_length,
                         max_response_tokens=max_length // 2)
    batch = {k: v.to(model.device) for k, v in collate_pairs(pairs, model.config).items()}
    logp = target_logprobs(model, batch, emotion.to(model.device))
    return logp.sum(dim=1).tolist(), batch["tgt_mask"].sum(dim=1).tolist()


# --- Loading a trained model -----------------------------------------------------------------------------------

def load_seq2seq(directory: str | Path, device: str | torch.device = "cpu"
                 ) -> tuple[Seq2Seq, PreTrainedTokenizerBase, EmotionClassifier | None]:
    """Model, tokenizer and (where one was saved beside them) the emotion model that picks the class."""
    directory = Path(directory)
    emotion_dir = directory / EMOTION_DIR
    emotion_model = EmotionClassifier.from_pretrained(emotion_dir, device) if emotion_dir.is_dir() else None
    return Seq2Seq.from_pretrained(directory, device), load_tokenizer(directory), emotion_model
