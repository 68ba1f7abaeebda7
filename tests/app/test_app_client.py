"""Every callback through ``gradio_client`` against the locally launched app: load, a tiny meta-training run
(streamed), a tiny adaptation comparison, cancel, and per-session isolation."""

from __future__ import annotations

import time

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

# /meta_train arguments: family, kind, method, name, iterations, meta_batch, trajectories, inner_steps,
# inner_lr, outer_lr, first_order, total_steps, episodes_per_trial, rl2_lr, hidden_dim, seed
TINY_TRAIN = ("cartpole-physics", "ssm", "MAML", "tiny", 2, 1, 2, 1, 0.1, 1e-3, False, 20_480, 2, 1e-3, 16, 0)
NO_PHYSICS = (None,) * 5


def adapt_args(
    label: str, tasks: str = "held-out", physics: tuple = NO_PHYSICS, render: bool = True, modes: str = "both"
) -> tuple:
    # label, tasks, num_tasks, steps, seeds, trajectories, lr, w, algo, modes, render, then 5 physics values
    return (label, tasks, 2, 1, 1, 2, 0.1, 0.1, "pg", modes, render, *physics)


@pytest.fixture
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


def test_meta_train_streams_then_adapt_and_load_the_new_model(client):
    job = client.submit(*TINY_TRAIN, api_name="/meta_train")
    status, _plot, load_choice, adapt_choice = job.result(timeout=300)
    statuses = [o[0] for o in job.outputs()]
    assert any(s.startswith("Meta-iteration 1/2") for s in statuses)  # progress streamed per iteration
    assert "saved as **tiny**" in status and load_choice["value"] == adapt_choice["value"] == "tiny"

    lr, note, *fields = client.predict("tiny", api_name="/adapt_model_changed")
    assert lr["value"] == 0.1 and lr["interactive"] and "adapts by gradient steps" in note
    assert [f["label"] for f in fields[:5]] == ["length", "masspole", "masscart", "gravity", "force_mag"]

    status, plot, table, summary, gif, note = client.predict(*adapt_args("tiny"), api_name="/adapt")
    assert status.startswith("Done") and plot["type"] == "matplotlib"
    assert table["headers"][:3] == ["policy", "0 steps", "1 step"]
    assert [r[0] for r in table["data"]] == ["random policy", "standard", "hybrid", "hybrid - standard"]
    assert "2 task(s) x 1 seed" in summary and gif.endswith(".gif") and "same env seed" in note

    status, facts, zero_shot, card, _ = client.predict("tiny", api_name="/load_model")
    assert "Loaded **tiny**" in status and "`cartpole-physics`" in facts and "| `ssm` |" in facts
    assert zero_shot["data"][0][0] == "held-out tasks (3)" and card.startswith("# tiny")


def test_cancel_ends_a_running_meta_training(client):
    job = client.submit(*TINY_TRAIN[:3], "long", 200, *TINY_TRAIN[5:], api_name="/meta_train")
    while not any(o[0].startswith("Meta-iteration") for o in job.outputs()):  # wait for the first iteration
        assert not job.done(), job.result()
        time.sleep(0.1)
    assert "Cancelling" in client.predict(api_name="/cancel")
    status = job.result(timeout=300)[0]
    assert "Cancelled" in status and "saved as **long**" in status
    assert "200/200" not in status


def test_invalid_requests_are_explained_in_the_status(client):
    client.predict(*TINY_TRAIN[:3], "mine", *TINY_TRAIN[4:], api_name="/meta_train")
    length_negative = (-0.5, 0.1, 1.0, 9.8, 10.0)
    status = client.predict(*adapt_args("mine", "by hand", length_negative), api_name="/adapt")[0]
    assert status == "**Cannot do that:** length must be > 0 (training range starts at 0.25), got -0.5."
    status = client.predict(*adapt_args(None), api_name="/adapt")[0]
    assert status.startswith("**Cannot do that:** Pick a model first")
    with pytest.raises(AppError, match="not in the list of choices"):  # the mode Radio refuses other values
        client.predict(*adapt_args("mine", modes="sideways"), api_name="/adapt")
    rl2_small = ("navigation-2d", "ssm", "RL²", "x", 2, 1, 2, 1, 0.1, 1e-3, False, 2048, 2, 1e-3, 16, 0)
    assert "at least 3,200 env steps" in client.predict(*rl2_small, api_name="/meta_train")[0]


def test_sessions_do_not_see_each_others_models(app_url):
    alice, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    alice.predict(*TINY_TRAIN[:3], "alices", *TINY_TRAIN[4:], api_name="/meta_train")
    assert "Loaded **alices**" in alice.predict("alices", api_name="/load_model")[0]
    with pytest.raises(AppError, match="not in the list of choices"):
        bob.predict("alices", api_name="/load_model")


def test_load_the_shipped_model(client, shipped_model):
    status, facts, zero_shot, card, choice = client.predict(shipped_model, api_name="/load_model")
    assert f"Loaded **{shipped_model}**" in status and "shipped with the package" in facts
    assert "`cartpole-physics`" in facts and choice["value"] == shipped_model
    assert any(row[0].startswith("held-out") and "." in row[1] for row in zero_shot["data"])
    assert card.startswith(f"# {shipped_model}")


def test_self_improvement_runs_attaches_and_stops_through_the_api(client):
    from ssm_metarl.app.improvement import BUDGETS, DECISION_HEADERS

    tiny = next(b for b in BUDGETS if b.startswith("tiny"))
    # /self_improve arguments: family, kind, cycles, candidates, budget preset, seed
    status, plot, incumbent, table, folder = client.predict(
        "navigation-2d", "mlp", 1, 1, tiny, 0, api_name="/self_improve"
    )
    assert status.startswith("Done") and plot["type"] == "matplotlib" and "SHA-256" in incumbent
    kind = DECISION_HEADERS.index("decision")
    kinds = [row[kind] for row in table["data"]]
    assert kinds[0] == "started" and "trial" in kinds
    folder = (
        folder["value"] if isinstance(folder, dict) else folder
    )  # the Textbox update carries the run's folder
    attached = client.predict(folder, api_name="/attach_loop")
    assert attached[3]["data"] == table["data"], (folder, attached[0])  # the same view, read back
    assert client.predict(api_name="/stop_improvement").startswith("Nothing to stop")
    outside = client.predict("/etc", api_name="/attach_loop")[0]
    assert outside.startswith("**Cannot do that:**")
