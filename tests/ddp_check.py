"""Run by test_ddp.py, either alone or under `accelerate launch --multi_gpu --num_processes 2`.

Trains a tiny reservoir model for a few SGD steps on fixed-length synthetic pairs and writes,
per rank, the logged losses and the reservoir and layer-0 weights.

With a third argument ``cooldown`` it trains with the budget-aware learning-rate cool-down, and
each rank's clock runs at a different speed: a counter, not the machine's time (rank r's clock moves
1000 (1 + r) / 16 seconds per reading), so the run is the same on a fast or a loaded machine. The ranks
must still train with one learning rate (rank 0's), or their weights drift apart.

With ``timed_save`` it saves checkpoints on a wall-clock interval only (``TimedSaveCallback``; no step-based saves
fall due), each rank's time again a counter at its own speed (rank r's moves 1 + 9r per reading, the interval is
3): rank 0's clock calls a save every third step, rank 1's would call one at every step. Every rank must save
when rank 0 decides, together.
"""

import itertools
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transformers import Seq2SeqTrainingArguments, default_data_collator  # noqa: E402

from hf_reservoir import ReservoirMarianConfig, ReservoirMarianMTModel  # noqa: E402
from hf_reservoir.trainer.convergence import ConvergenceCallback  # noqa: E402
from hf_reservoir.trainer.reservoir_trainer import ReservoirSeq2SeqTrainer, TimedSaveCallback  # noqa: E402


def main(out_dir: str, per_device_batch: int, cooldown: bool = False, timed_save: bool = False) -> None:
    torch.manual_seed(0)
    config = ReservoirMarianConfig(
        vocab_size=64,
        d_model=32,
        encoder_layers=5,
        decoder_layers=1,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        max_position_embeddings=32,
        pad_token_id=63,
        decoder_start_token_id=63,
        eos_token_id=0,
        num_encoder_reservoir_layers=2,
        reservoir_type=["bigru", "ffn"],
        dropout=0.0,
        layernorm_position="pre",
    )
    model = ReservoirMarianMTModel(config)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(1)
    data = [
        {
            "input_ids": torch.randint(1, 60, (10,), generator=generator),
            "attention_mask": torch.ones(10, dtype=torch.long),
            "labels": torch.randint(1, 60, (8,), generator=generator),
        }
        for _ in range(64)
    ]
    args = Seq2SeqTrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=per_device_batch,
        max_steps=12 if cooldown or timed_save else 3,
        optim="sgd",
        learning_rate=0.5,
        lr_scheduler_type="constant",
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="steps" if timed_save else "no",
        save_steps=1000,  # never due: only the timed saves happen
        seed=5,
        ddp_find_unused_parameters=False,
        disable_tqdm=True,
        data_seed=5,
    )
    callbacks = []
    if cooldown:
        # About one reading per step: 12 steps take rank 0's clock to about 800 of the 1000-second budget, and
        # rank 1's own clock (twice as fast) past it, so a rank that followed its own clock would diverge.
        readings, tick = itertools.count(), 1000.0 * (1 + args.process_index) / 16
        callbacks.append(
            ConvergenceCallback(budget_seconds=1000.0, lr_cooldown=1.0, clock=lambda: next(readings) * tick)
        )
    timed = None
    if timed_save:
        readings, tick = itertools.count(), 1.0 + 9.0 * args.process_index
        timed = TimedSaveCallback(3.0, time_source=lambda: next(readings) * tick)
        callbacks.append(timed)
    trainer = ReservoirSeq2SeqTrainer(
        model=model, args=args, train_dataset=data, data_collator=default_data_collator, callbacks=callbacks
    )
    trainer.train()
    rank = args.process_index
    final = dict(trainer.model.named_parameters())
    reservoir = {n: p.detach() for n, p in final.items() if ".layers.1." in n or ".layers.3." in n}
    record = {
        "world_size": args.world_size,
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "learning_rates": [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e],
        "timed_saves": timed.saves if timed else None,
        "checkpoints": sorted(n for n in os.listdir(out_dir) if n.startswith("checkpoint-")),
        "reservoir_unchanged": all(torch.equal(initial[n], p) for n, p in reservoir.items()),
        "layer0_changed": not torch.equal(
            initial["model.encoder.layers.0.fc1.weight"], final["model.encoder.layers.0.fc1.weight"].detach()
        ),
    }
    torch.save(
        {"reservoir": reservoir, "layer0": final["model.encoder.layers.0.fc1.weight"].detach()},
        os.path.join(out_dir, f"weights_rank{rank}.pt"),
    )
    with open(os.path.join(out_dir, f"record_rank{rank}.json"), "w") as handle:
        json.dump(record, handle)
    if torch.distributed.is_initialized():  # leave together: an exit with the group alive once aborted at teardown
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(
        sys.argv[1], int(sys.argv[2]), cooldown=sys.argv[3:] == ["cooldown"], timed_save=sys.argv[3:] == ["timed_save"]
    )
