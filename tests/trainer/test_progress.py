"""The progress bar and the per-evaluation line (hf_reservoir/trainer/progress.py)."""

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_reservoir.trainer.convergence import ConvergenceCallback
from tests.conftest import FakeClock, drive


@pytest.fixture
def args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path), report_to="none")


def test_the_progress_bar_ends_on_the_last_evaluation(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from hf_reservoir.trainer.convergence import ConvergenceCallback
    from hf_reservoir.trainer.progress import ConvergenceProgressCallback

    clock = ConvergenceCallback()
    progress = ConvergenceProgressCallback(clock, show_bar=True)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    state, control = TrainerState(max_steps=20), TrainerControl()
    state.is_world_process_zero = True
    for callback in (clock, progress):
        callback.on_train_begin(args, state, control)
    for step in range(1, 21):
        clock.on_step_begin(args, state, control)
        state.global_step = step
        for callback in (clock, progress):
            callback.on_step_end(args, state, control)
        if step in (10, 20):  # the evaluation at the last step comes after that step's bar update
            for callback in (clock, progress):
                callback.on_evaluate(args, state, control, metrics={"eval_bleu": step + 0.5, "eval_chrf": 1.0})
    bar = progress.training_bar
    progress.on_train_end(args, state, control)
    assert "BLEU 20.50" in bar.postfix and "best 20.50 at step 20" in bar.postfix


def test_progress_shows_steps_clock_and_best_bleu(args, capsys):
    from hf_reservoir.trainer.progress import ConvergenceProgressCallback

    clock = FakeClock()
    callback = ConvergenceCallback(clock=clock)
    progress = ConvergenceProgressCallback(callback, show_bar=False)
    script = [("step", 2.0), ("step", 2.0), ("eval", 5.0, 3.5), ("step", 2.0), ("step", 2.0), ("eval", 5.0, 2.5)]
    drive(callback, clock, script, args, progress=progress, max_steps=40)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "[hf-reservoir] step 2/40, training 4 s, 0.50 steps/s, BLEU 3.50 (best 3.50 at step 2)"
    assert lines[1] == "[hf-reservoir] step 4/40, training 8 s, 0.50 steps/s, BLEU 2.50 (best 3.50 at step 2)"
    # The best model's final scoring evaluates again (other metric names): no curve point, so no second line.
    final = {"final_validation_bleu": 3.5}
    callback.on_evaluate(args, TrainerState(global_step=4, max_steps=40), TrainerControl(), metrics=final)
    progress.on_evaluate(args, TrainerState(global_step=4, max_steps=40), TrainerControl(), metrics=final)
    assert capsys.readouterr().out == ""
