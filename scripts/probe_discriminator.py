"""How well can a discriminator's head tell expert replies from a generator's, given what its encoder pools?

Samples one reply per training context from a generator, encodes (history, prompt, reply) with the frozen MiniLM
the discriminator starts from, and trains the discriminator's head (two hidden layers of 100 units, tanh) on three
inputs: reply length alone, the mean over all tokens (`pool_reply: false`), and that mean with the mean over the
reply's own tokens beside it (`pool_reply: true`). Prints the held-out accuracy of each; 0.5 is chance.

    python scripts/probe_discriminator.py [--model checkpoints/mle] [--contexts 2000] [--seed 0]

On the CPU previews (2,000 contexts): length 0.57, all tokens 0.55, all tokens + reply 0.70 (README, Results).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

if __package__ in (None, ""):  # run as a file: the repository root holds core/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def probe(expert: torch.Tensor, generated: torch.Tensor, held_out: float = 0.2, hidden: int = 100,
          steps: int = 300, seed: int = 0) -> float:
    """Held-out accuracy of a 2 x `hidden` tanh head trained full-batch to tell `expert` rows from `generated`
    ones (row i of each comes from the same context; a context's pair is held out together)."""
    torch.manual_seed(seed)
    cut = len(expert) - max(1, int(held_out * len(expert)))
    x = torch.cat([expert[:cut], generated[:cut]]).float()
    y = torch.cat([torch.ones(cut), torch.zeros(cut)])
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)  # the features' scales differ by orders (length vs MiniLM)
    head = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                               torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(head((x - mean) / std).squeeze(-1), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_x = (torch.cat([expert[cut:], generated[cut:]]).float() - mean) / std
    test_y = torch.cat([torch.ones(len(expert) - cut), torch.zeros(len(generated) - cut)])
    with torch.no_grad():
        return ((head(test_x).squeeze(-1) > 0).float() == test_y).float().mean().item()


def main(argv: list[str] | None = None) -> None:
    from tqdm.auto import tqdm

    from core.data import DataConfig, load_trajectories, seeded_subset
    from core.models.encoder import EncoderConfig, TextEncoder
    from core.models.generator import Decoding, generate, load_generator, load_model_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="checkpoints/mle", help="the generator whose replies D must tell apart")
    parser.add_argument("--contexts", type=int, default=2000, help="training contexts, one reply each")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    rows = seeded_subset(load_trajectories(DataConfig())["train"], args.contexts, args.seed)
    contexts = [(list(h), p) for h, p in zip(rows["history"], rows["prompt"])]
    generator, tokenizer = load_generator(args.model), load_model_tokenizer(args.model)
    encoder = TextEncoder(EncoderConfig(max_length=96, freeze=True)).eval()  # as configs/presets/cpu.yaml
    features = {"expert": [], "generated": []}
    for start in tqdm(range(0, len(contexts), args.batch_size), desc="sample + encode", unit="batch"):
        batch = contexts[start:start + args.batch_size]
        sampled = generate(generator, tokenizer, batch, Decoding(max_new_tokens=args.max_new_tokens)).texts
        replies = {"expert": rows["response"][start:start + args.batch_size], "generated": sampled}
        for side, texts in replies.items():
            with torch.no_grad():
                pooled = encoder.encode([[*h, p] for h, p in batch], texts, pool_reply=True)
            length = torch.tensor([[len(t.split())] for t in texts], dtype=torch.float)
            features[side].append(torch.cat([length, pooled], dim=-1))
    expert, generated = torch.cat(features["expert"]), torch.cat(features["generated"])
    dim = encoder.dim
    print(f"{len(expert)} contexts; mean words: expert {expert[:, 0].mean():.1f}, "
          f"generated {generated[:, 0].mean():.1f}")
    for name, columns in (("reply length alone", slice(0, 1)), ("mean over all tokens", slice(1, 1 + dim)),
                          ("all tokens + reply tokens", slice(1, 1 + 2 * dim))):
        accuracy = probe(expert[:, columns], generated[:, columns], seed=args.seed)
        print(f"{name:28s} held-out accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
