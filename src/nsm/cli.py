"""The `nsm` command line. `nsm --help` lists every command; each `--help` explains its options.

Bad input ends in one red line that names the fix and exit code 2; nothing here imports ROS.
"""
import inspect
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from nsm.errors import NsmError
from nsm.settings import DEFAULT_DB_URL

app = typer.Typer(
    help=(
        "nsm runs learned robot policies (LeRobot ACT) beside a low-cost arm (SO-101), records "
        "episodes for retraining and logs telemetry to SQLite/PostgreSQL.\n\n"
        "Start with `nsm demo`: the simulated SO-101 end to end (MuJoCo scene and cameras, a "
        "policy through the async chunk queue at 30 Hz, an HDF5 episode, telemetry in SQLite). "
        "On a robot the same cores run as ROS 2 nodes: `ros2 launch nsm bringup.launch.py`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from nsm import __version__

        typer.echo(f"nsm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """nsm: learned robot policies beside a low-cost arm."""


@contextmanager
def one_line_errors():
    """Bad input (NsmError) ends the command with one red line naming the fix, exit code 2."""
    try:
        yield
    except NsmError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


METAVARS = {int: "INTEGER", float: "FLOAT", list[str]: "NAME", bool: ""}


def schema_options(options: dict[str, tuple[type, str]], envvars: dict[str, str]) -> list[inspect.Parameter]:
    """Typer options for node settings (nsm.settings): the help is the field's description, the
    default shown is the schema's, choices are listed; unset options stay None so a --config
    folder's YAML files or the schema fill them in. Validation stays in the schema."""
    params = []
    for option, (schema, name) in options.items():
        field = schema.model_fields[name]
        default = field.default
        kind = list[str] if isinstance(default, list) else str if schema.choices(name) else type(default)
        shown = ", ".join(default) if isinstance(default, list) else default
        shown = str(shown).lower() if isinstance(shown, bool) else shown
        text = f"{field.description}. [default: {shown}]".replace("<", "\\<")  # markdown help: keep <n>
        metavar = "|".join(schema.choices(name)) or METAVARS.get(kind, "TEXT")
        info = typer.Option(help=text, show_default=False, envvar=envvars.get(option), metavar=metavar)
        params.append(inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[kind | None, info]))
    return params


def _demo(config: Path | None = None, **options) -> None:
    """Run the simulated SO-101 end to end, headless, and print a summary.

    The task: pick up the cube (placed by seed) and put it on the green goal. The policy is
    the scripted pick-and-place expert (ground-truth cube pose + inverse kinematics) unless
    `--policy` names a LeRobot policy folder; either drives the arm through the same control
    loop (nsm.control), async chunk runtime, safety filter, recorder and telemetry writer the
    ROS nodes run. Node options take their defaults from nsm.settings, the schema the nodes
    read; `--config DIR` reads a folder of the nodes' YAML files (arm_driver.yaml,
    policy.yaml, recorder.yaml, db_bridge.yaml) first, and options given here win.
    """
    from nsm.app.demo import Demo
    from nsm.app.demo_settings import demo_config

    given = {name: value for name, value in options.items() if value is not None}
    with one_line_errors():
        run = Demo(demo_config(config, **given))
    try:
        if run.view_server is not None:
            from nsm.viewer.server import web_url

            Console().print(f"live view: {web_url(web_port=run.cfg.view_port, grpc_port=run.cfg.view_grpc_port)}",
                            soft_wrap=True)
        with one_line_errors(), Progress(TextColumn("[bold]demo"), BarColumn(), MofNCompleteColumn(),
                                         TextColumn("control steps"), TimeRemainingColumn(), console=console,
                                         transient=True) as progress:
            task = progress.add_task("run", total=run.total_steps)
            summary = run.run(on_step=lambda done: progress.update(task, completed=done))
        _print_summary(summary)
        if run.view_server is not None:
            Console().print("the run is over; its live view stays up until Ctrl-C")
            run.view_server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        run.close()


def _demo_command():
    """`nsm demo`, its node options generated from the schema (one source for every default)."""
    from nsm.app.demo_settings import NODE_OPTIONS, SECTIONS, DemoConfig

    own = DemoConfig.model_fields
    params = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Path | None, typer.Option(help="Folder of node YAML files (like nsm's config/) read before the options.")]),
        *schema_options({option: (SECTIONS[section], name) for option, (section, name) in NODE_OPTIONS.items()},
                        {"db_url": "NSM_DB_URL"}),
        *(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=own[name].default,
                            annotation=Annotated[kind, typer.Option(help=f"{own[name].description}.")])
          for name, kind in (("seconds", float), ("episodes", int), ("bag_zstd", bool), ("render", str), ("view", bool),
                             ("view_port", int), ("view_grpc_port", int))),
    ]

    def demo(**options) -> None:
        _demo(**options)

    demo.__doc__ = _demo.__doc__
    demo.__signature__ = inspect.Signature(params)
    demo.__annotations__ = {p.name: p.annotation for p in params}
    return demo


app.command("demo")(_demo_command())


policy_app = typer.Typer(help="Create, fetch and export LeRobot policies (ACT; Diffusion on the torch backend).",
                         no_args_is_help=True)
app.add_typer(policy_app, name="policy")


def _image_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not HEIGHTxWIDTH, e.g. 240x320") from None


# the size `nsm train`'s default (cpu) preset is tuned for: 240x320 trains ~4x slower a step on a CPU
DEFAULT_DATASET_IMAGE_SIZE = "96x128"
DatasetImageSize = Annotated[str, typer.Option(
    help="HEIGHTxWIDTH of the dataset's images: the model's input, resized from the cameras' frames by the one function "
         "the robot's runtime uses too (recorded with the dataset and the model). 96x128 is what `nsm train --preset cpu` "
         "is tuned for; `native` keeps the cameras' size (e.g. for --preset full on a GPU).")]


def _dataset_image_size(text: str) -> tuple[int, int] | None:
    return None if text == "native" else _image_size(text)


@policy_app.command("init")
def policy_init(
    out: Annotated[Path, typer.Argument(help="New folder for the policy (LeRobot save_pretrained layout).")],
    cameras: Annotated[str, typer.Option(help="Comma-separated camera names, in the model's input order.")] = "front,wrist",
    state_dim: Annotated[int, typer.Option(help="Joints in observation.state and action.", min=1)] = 6,
    image_size: Annotated[str, typer.Option(help="HEIGHTxWIDTH of every camera image.")] = "240x320",
    chunk_size: Annotated[int, typer.Option(help="Actions per predicted chunk.", min=1)] = 100,
    small: Annotated[bool, typer.Option(help="A small transformer (dim 128, 2+1 layers) for CPU training and tests.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Create a randomly initialised LeRobot ACT policy, fully offline.

    For tests, benchmarks and trying the stack before a policy is trained: the weights
    (ResNet18 backbone included) are random and the normalization stats neutral. The
    folder loads with LeRobot's own `ACTPolicy.from_pretrained` and processors.
    """
    from nsm.policy.init import init_act

    with one_line_errors():
        names = [c.strip() for c in cameras.split(",") if c.strip()]
        d = init_act(out, names, state_dim, _image_size(image_size), chunk_size, small, seed)
    Console().print(f"ACT policy with random weights in {d.path}: cameras {', '.join(d.features.cameras)} at "
                    f"{image_size}, state {state_dim}, chunk {chunk_size}")


@policy_app.command("ensemble")
def policy_ensemble(
    out: Annotated[Path, typer.Argument(help="New folder for the ensemble.")],
    models: Annotated[list[Path], typer.Argument(help="Two or more policy folders trained on the same dataset "
                                                      "(e.g. `nsm train` with --seed 1000 and --seed 1001).")],
) -> None:
    """Combine trained models into one policy whose chunk is the mean of theirs.

    Models of one recipe trained with other seeds miss different cubes; averaged, they miss
    fewer (README, Benchmarks). The folder is the first model whole (LeRobot loads it as that
    one model) plus the others under members/; `nsm eval`, the policy node and `nsm policy
    export` (onnx, onnx-int8, tensorrt: one graph) run all of them. Inference costs one
    model's time per member.
    """
    from nsm.policy.ensemble import make_ensemble

    with one_line_errors():
        d = make_ensemble(out, models)
    Console().print(f"ensemble of {1 + len(d.members)} models in {d.path}")


@policy_app.command("export")
def policy_export(
    model: Annotated[Path, typer.Argument(help="Policy folder (LeRobot save_pretrained layout).")],
    format: Annotated[str, typer.Option("--format", help="onnx; onnx-int8 (static int8, calibrated on --calibration); "
                                                         "tensorrt (builds the engine for this GPU from the ONNX "
                                                         "export).")] = "onnx",
    fp16: Annotated[bool, typer.Option(help="TensorRT: build an FP16 engine.")] = False,
    calibration: Annotated[Path | None, typer.Option(help="onnx-int8: folder of recorded HDF5 episodes (e.g. "
                                                          "runs/collect/episodes) to calibrate on.")] = None,
    frames: Annotated[int, typer.Option(help="onnx-int8: calibration frames, spread over the episodes.", min=1)] = 200,
) -> None:
    """Export the policy network for the onnxruntime / onnxruntime-int8 / tensorrt backends.

    Writes `MODEL/onnx/model.onnx` with `export.json` (inputs, chunk size, hash of config and
    normalization stats: a stale export is refused at load). `--format onnx-int8` adds
    `MODEL/onnx/model.int8.onnx` (ONNX Runtime static quantization; check its success rate
    with `nsm eval --backend onnxruntime-int8` before deploying it). `--format tensorrt` builds
    `MODEL/tensorrt/<trt>-<precision>-sm<arch>.engine` once, on the robot's GPU.
    """
    from nsm.policy.backends import build_engine
    from nsm.policy.export import ensure_onnx_export, export_onnx
    from nsm.policy.model_dir import PolicyDir
    from nsm.policy.quantize import quantize_int8

    with one_line_errors():
        d = PolicyDir(model)
        if format == "onnx":
            path = export_onnx(d)
        elif format == "onnx-int8":
            if calibration is None:
                raise NsmError("--format onnx-int8 needs --calibration EPISODES_FOLDER (recorded HDF5 episodes)")
            path = quantize_int8(d, calibration, frames, on_progress=lambda text: Console().print(text))
        elif format == "tensorrt":
            ensure_onnx_export(d)  # the engine is built from the ONNX export: made here if missing
            path = build_engine(d, fp16)
        else:
            raise NsmError(f"unknown format '{format}'; use onnx, onnx-int8 or tensorrt")
    Console().print(f"wrote {path}")


@policy_app.command("download")
def policy_download(
    repo_id: Annotated[str, typer.Argument(help="Hugging Face Hub repository, e.g. lerobot/act_aloha_sim_transfer_cube_human.")],
    out: Annotated[Path, typer.Argument(help="Folder to download into.")],
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit to pin.")] = None,
) -> None:
    """Download a policy from the Hugging Face Hub (the only command that goes online;
    the token, if needed, comes from HF_TOKEN)."""
    from nsm.policy.hub import download

    with one_line_errors():
        path = download(repo_id, out, revision)
    Console().print(f"downloaded {repo_id} to {path}")


@policy_app.command("push")
def policy_push(
    model: Annotated[Path, typer.Argument(help="Policy folder (e.g. from `nsm train`).")],
    repo_id: Annotated[str, typer.Argument(help="Hugging Face Hub model repository, e.g. my-org/so101-act.")],
    public: Annotated[bool, typer.Option(help="Create the repository public (default: private).")] = False,
) -> None:
    """Upload a policy folder to the Hugging Face Hub (token from HF_TOKEN); prints the commit
    to pin on the robot with `nsm policy download REPO DIR --revision COMMIT`."""
    from nsm.policy.hub import push

    with one_line_errors():
        commit = push(model, repo_id, private=not public)
    Console().print(f"pushed {model} to {repo_id} at commit {commit}")


db_app = typer.Typer(help="The telemetry database: SQLite (embedded default) or PostgreSQL.", no_args_is_help=True)
app.add_typer(db_app, name="db")
telemetry_app = typer.Typer(help="Telemetry rows out of the database, for training.", no_args_is_help=True)
app.add_typer(telemetry_app, name="telemetry")
DB_URL_HELP = "Database URL, e.g. sqlite:///runs/telemetry.db or postgresql://user@host/db?sslmode=require."
SIM_TELEMETRY_DB_URL = "sqlite:///runs/sim-telemetry/telemetry.db"  # simulated training data, apart from live rows


@db_app.command("upgrade")
def db_upgrade(
    db_url: Annotated[str, typer.Option(help=DB_URL_HELP, envvar="NSM_DB_URL")] = DEFAULT_DB_URL,
    revision: Annotated[str, typer.Option(help="Alembic revision to migrate to.")] = "head",
) -> None:
    """Create or migrate the schema (robot_telemetry, episodes, predictions) with Alembic."""
    from nsm.telemetry.db import connect, upgrade

    with one_line_errors():
        at = upgrade(connect(db_url, migrate=False), revision)
    Console().print(f"database at revision {at}")


@db_app.command("prune")
def db_prune(
    older_than: Annotated[str, typer.Option(help="Age of the telemetry to drop: 30d, 12h, 90m.")],
    db_url: Annotated[str, typer.Option(help=DB_URL_HELP, envvar="NSM_DB_URL")] = DEFAULT_DB_URL,
) -> None:
    """Drop telemetry older than --older-than: on PostgreSQL whole day partitions (DROP TABLE:
    instant, no vacuum), on SQLite the rows. Episodes and predictions are kept."""
    from datetime import timedelta

    from nsm.telemetry.db import connect
    from nsm.telemetry.partitions import prune

    with one_line_errors():
        match = re.fullmatch(r"(\d+)([dhm])", older_than.strip())
        if match is None:
            raise NsmError(f"--older-than {older_than!r}: give a number and d, h or m (e.g. 30d)")
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match[2]]
        age = timedelta(**{unit: int(match[1])})
        dropped, deleted = prune(connect(db_url), age)
    Console().print(f"dropped {len(dropped)} day partitions ({', '.join(dropped) or 'none'}) and {deleted} rows "
                    f"older than {older_than}")


@telemetry_app.command("export")
def telemetry_export(
    robot: Annotated[str, typer.Option(help="robot_id, e.g. EP01.")],
    type: Annotated[str, typer.Option("--type", help="data_type, e.g. battery, joint_states, loop_timing.")],
    out: Annotated[Path, typer.Option(help="Output .parquet file.")],
    db_url: Annotated[str, typer.Option(help=DB_URL_HELP, envvar="NSM_DB_URL")] = DEFAULT_DB_URL,
    payload: Annotated[bool, typer.Option(help="Also export the whole JSON payload as text.")] = False,
) -> None:
    """Export one robot's rows of one type: created_at, seq, value = (payload->>'value')::float.

    Streams (PostgreSQL COPY -> pyarrow), so millions of rows need little memory. In pandas:
    `nsm.telemetry.export.to_dataframe(engine, "EP01", "battery")`.
    """
    from nsm.telemetry.db import connect
    from nsm.telemetry.export import export_parquet

    with one_line_errors():
        engine = connect(db_url, migrate=False)
        with Progress(TextColumn("[bold]export"), TextColumn("{task.completed} rows"), console=console,
                      transient=True) as progress:
            task = progress.add_task("export")
            rows = export_parquet(engine, robot, type, out, payload, lambda n: progress.update(task, completed=n))
    if rows == 0:
        console.print(f"[yellow]no rows for robot_id={robot!r}, data_type={type!r}[/]; nothing written")
        raise typer.Exit(1)
    Console().print(f"wrote {rows} rows to {out}")


serve_app = typer.Typer(help="The fleet server: robots' telemetry in over HTTP (run it: `nsm serve`), and who may "
                              "send it (`nsm serve token`).", invoke_without_command=True)
app.add_typer(serve_app, name="serve")


@serve_app.callback()
def serve(
    ctx: typer.Context,
    db_url: Annotated[str, typer.Option(help=DB_URL_HELP, envvar="NSM_DB_URL")] = "sqlite:///runs/server/telemetry.db",
    token: Annotated[str, typer.Option(help="One bearer token any robot may use (the single-token setup); per-robot "
                                            "tokens: `nsm serve token add --robot ID`.",
                                       envvar="NSM_INGEST_TOKEN")] = "",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_pending: Annotated[int, typer.Option(help="Rows waiting to be written past which batches get 429 (the "
                                                  "robots keep them and send them again); per worker.")] = 200_000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (each with its own database writer); "
                                                     "more than the cores left beside PostgreSQL only costs.")] = 1,
) -> None:
    """Run the telemetry ingest service (FastAPI): robots POST batches to /v1/telemetry.

    Give each robot its own token (`nsm serve token add --robot EP01`: it writes EP01's rows
    only) and point the robot at the server with `BACKEND_API_URL=http://server:8000` and
    `BACKEND_API_TOKEN` (the db_bridge node's `db_url` parameter takes the http URL too).
    A batch is answered once committed (many robots' batches share one COPY); while the
    database is down or the server is full the robots keep their rows and send them again.
    The schema is migrated on start.
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from nsm.telemetry.db import connect
    from nsm.telemetry.ingest import create_app
    from nsm.telemetry.tokens import active_tokens

    with one_line_errors():
        try:
            engine = connect(db_url)  # reachable and migrated before the first robot posts
        except NsmError as exc:
            if not token:
                raise  # the robots' tokens are in the database
            # the fleet token works without it: answer 503 (robots keep their rows) until it is up;
            # the server migrates it then (nsm.telemetry.ingest)
            Console(stderr=True).print(f"warning: {exc}; serving anyway, robots get 503 until it answers")
        else:
            if not token and active_tokens(engine) == 0:
                raise NsmError(f"no robot could send: add a token per robot (`nsm serve token add --robot ID "
                               f"--db-url {db_url}`) or give one fleet-wide --token (NSM_INGEST_TOKEN)")
    if workers == 1:
        uvicorn.run(create_app(db_url, token, max_pending=max_pending), host=host, port=port, log_level="warning")
        return
    # each worker process builds its own app (nsm.telemetry.ingest.app_from_env) from these
    os.environ.update({"NSM_DB_URL": db_url, "NSM_INGEST_TOKEN": token, "NSM_MAX_PENDING": str(max_pending)})
    uvicorn.run("nsm.telemetry.ingest:app_from_env", factory=True, workers=workers, host=host, port=port,
                log_level="warning")


token_app = typer.Typer(help="Per-robot and read-only tokens for `nsm serve`, stored hashed (shown once, when made).",
                        no_args_is_help=True)
serve_app.add_typer(token_app, name="token")
SERVER_DB = Annotated[str, typer.Option("--db-url", help="The server's database (as `nsm serve --db-url`).",
                                        envvar="NSM_DB_URL")]


@token_app.command("add")
def token_add(
    db_url: SERVER_DB = "sqlite:///runs/server/telemetry.db",
    robot: Annotated[str, typer.Option(help="The robot_id this token writes (only that one's rows).")] = "",
    read_only: Annotated[bool, typer.Option(help="A token that writes nothing: dashboards and exports.")] = False,
    name: Annotated[str, typer.Option(help="A label shown by `list` (default: the robot_id).")] = "",
) -> None:
    """Make a token and print it once (only its SHA-256 is stored): --robot ID or --read-only."""
    from nsm.telemetry.db import connect
    from nsm.telemetry.ingest import NAME
    from nsm.telemetry.tokens import add_token

    with one_line_errors():
        if bool(robot) == read_only:
            raise NsmError("say whose token it is: --robot ID (writes that robot's rows) or --read-only")
        if robot and not re.fullmatch(NAME, robot):
            raise NsmError(f"--robot {robot!r} is not a robot_id (letters, digits, _.:- ; up to 64)")
        token_id, token = add_token(connect(db_url), robot or None, name or None)
    Console().print(f"token {token_id} ({'robot ' + robot if robot else 'read-only'}); shown only now, give it to "
                    f"the {'robot as BACKEND_API_TOKEN' if robot else 'dashboard'}:")
    print(token)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (`nsm serve token list`).")],
    db_url: SERVER_DB = "sqlite:///runs/server/telemetry.db",
) -> None:
    """Revoke a token: the server refuses it within 5 s (its cache), everywhere."""
    from nsm.telemetry.db import connect
    from nsm.telemetry.tokens import revoke_token

    with one_line_errors():
        revoke_token(connect(db_url), token_id)
    Console().print(f"token {token_id} revoked")


@token_app.command("list")
def token_list(db_url: SERVER_DB = "sqlite:///runs/server/telemetry.db") -> None:
    """The tokens: id, label, role, robot, created, revoked (never the tokens themselves)."""
    from nsm.telemetry.db import connect
    from nsm.telemetry.tokens import list_tokens

    with one_line_errors():
        rows = list_tokens(connect(db_url))
    table = Table(title=f"tokens of {db_url}", title_justify="left")
    for column in ("id", "name", "role", "robot", "created", "revoked"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r.id), r.name, r.role, r.robot_id or "-", f"{r.created_at:%Y-%m-%d %H:%M}",
                      f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "")
    Console().print(table)


sim_app = typer.Typer(help="The simulated SO-101 pick-and-place scene: expert demonstrations.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


@sim_app.command("collect")
def sim_collect(
    episodes: Annotated[int, typer.Option(help="Episodes to record (10 s each, seeds seed..seed+N-1).", min=1)] = 50,
    out: Annotated[Path, typer.Option(help="New folder: episodes/ (HDF5 + telemetry.db) and lerobot/ (the "
                                           "dataset).")] = Path("runs/collect"),
    seed: Annotated[int, typer.Option(help="Seed of the first episode's cube placement.")] = 0,
    camera: Annotated[list[str] | None, typer.Option(help="Camera to record (repeat). Default: every camera of the robot "
                                                          "contract.")] = None,
    repo_id: Annotated[str, typer.Option(help="Name the LeRobotDataset is known by (nothing is "
                                              "uploaded).")] = "local/nsm_sim_pick_place",
    videos: Annotated[bool, typer.Option(help="Store cameras as MP4 video (LeRobot's default) instead of PNG frames.")] = True,
    image_size: DatasetImageSize = DEFAULT_DATASET_IMAGE_SIZE,
) -> None:
    """Record scripted expert demonstrations in simulation and convert them for training.

    The pick-and-place expert drives the simulated SO-101 through the same runtime, safety
    filter, cameras and recorder as a learned policy, in real time. Every episode is kept
    as HDF5 in OUT/episodes; the successful ones become the LeRobotDataset in OUT/lerobot
    (`LeRobotDataset(repo_id, root=OUT/lerobot)`), ready for `nsm train` or LeRobot's scripts.
    """
    from nsm.app.collect import Collector

    with one_line_errors():
        collector = Collector(episodes, out, seed, cameras=camera or None, repo_id=repo_id, videos=videos,
                              image_size=_dataset_image_size(image_size))
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console, transient=True) as progress:
            steps = progress.add_task("record", total=collector.total_steps)
            frames = progress.add_task("convert", total=None, visible=False)

            def on_frame() -> None:
                progress.update(frames, visible=True)
                progress.advance(frames)

            result = collector.run(lambda n: progress.update(steps, completed=n), on_frame)
    _print_summary(result.summary)
    Console().print(f"LeRobotDataset {repo_id}: {len(result.kept)} successful episodes of "
                    f"{len(result.summary.episodes)} in {result.dataset}")


@sim_app.command("telemetry")
def sim_telemetry(
    robot: Annotated[str, typer.Option(help="robot_id of the rows, e.g. EP01.")] = "EP01",
    seconds: Annotated[float, typer.Option(help="Robot time to simulate (runs ~30x faster than real time).", min=1)] = 600.0,
    db_url: Annotated[str, typer.Option(help=DB_URL_HELP, envvar="NSM_DB_URL")] = SIM_TELEMETRY_DB_URL,
    seed: Annotated[int, typer.Option(help="Seed of cube placements, pushes and their forces.")] = 0,
    battery_ah: Annotated[float, typer.Option(help="Battery capacity; small, so a run holds whole "
                                                   "discharges.", min=0.001)] = 0.05,
    pushes_per_minute: Annotated[float, typer.Option(help="Collisions (pushes on the gripper) per minute, on "
                                                          "average.", min=0)] = 6.0,
) -> None:
    """Simulated telemetry at simulation speed, with known collisions: training data for `nsm ai train`.

    The scripted expert picks and places back to back (no rendering); every step logs
    joint_states and joint_commands, every second battery, each push a `collision` row.
    Rows carry the simulated clock, ending now.
    """
    import time

    from nsm.app.sim_telemetry import simulate_telemetry
    from nsm.contract import load_contract
    from nsm.telemetry.writer import open_writer

    with one_line_errors():
        contract = load_contract("so101")
        spool = Path("runs/sim-telemetry/spool")
        writer = open_writer(db_url, robot, spool)
        with Progress(TextColumn("[bold]simulate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("simulate", total=int(round(seconds * contract.fps)))
            summary = simulate_telemetry(contract, writer.log, seconds, start=time.time() - seconds, seed=seed,
                                         battery_ah=battery_ah, pushes_per_minute=pushes_per_minute,
                                         on_step=lambda n: progress.update(task, completed=n + 1))
        stats = writer.close()
    Console().print(f"{robot}: {summary.steps} steps ({seconds:g} s), {summary.episodes} episodes, "
                    f"{summary.collisions} collisions, {summary.battery_swaps} battery swaps; "
                    f"{stats.written} rows written, {stats.spooled} spooled")


ai_app = typer.Typer(help="Telemetry models: train from robot_telemetry, export to ONNX with a model card.",
                     no_args_is_help=True)
app.add_typer(ai_app, name="ai")


@ai_app.command("train")
def ai_train(
    robot: Annotated[str, typer.Option(help="robot_id whose telemetry trains the model, e.g. EP01.")],
    type: Annotated[str, typer.Option("--type", help="battery (seconds until 5% left) or collision (risk from tracking error "
                                                     "and effort).")],
    db_url: Annotated[str, typer.Option(help=DB_URL_HELP, envvar="NSM_DB_URL")] = SIM_TELEMETRY_DB_URL,
    out: Annotated[Path | None, typer.Option(help="Model folder. Default: models/TYPE-ROBOT.")] = None,
    holdout: Annotated[float, typer.Option(help="Share of the time range held out (the last part) for the card's "
                                                "metrics.")] = 0.25,
) -> None:
    """Train a telemetry model through the export API and write model.onnx + preprocessing.json + MODEL_CARD.md.

    Windows are split by time: the card's metrics come from the last HOLDOUT of the data,
    never trained on. Run the model live with `nsm worker --model OUT` or the ROS
    `predictor_node`. Simulated training data: `nsm sim telemetry`.
    """
    from nsm.ai.train import train as train_model

    out = out or Path("models") / f"{type}-{robot}"
    with one_line_errors():
        with console.status(f"training the {type} model on {robot}'s telemetry"):
            card = train_model(db_url, robot, type, out, holdout)
    table = Table(title=f"{type} model, held-out {card['data']['held_out_from']} .. {card['data']['to']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in card["metrics_held_out"].items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
    Console().print(f"model in {out} (MODEL_CARD.md, heldout.png)")


@ai_app.command("hub")
def ai_hub(
    port: Annotated[int, typer.Option(help="TCP port.")] = 5000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    namespace: Annotated[str, typer.Option(help="Socket.IO namespace.")] = "/",
    token: Annotated[str, typer.Option(help="Token workers must send ('' = any).", envvar="NSM_HUB_TOKEN")] = "",
    record: Annotated[Path | None, typer.Option(help="Append each message with its arrival time to this JSON-lines "
                                                     "file.")] = None,
) -> None:
    """A development hub: shows the `ai_prediction` updates workers send, as the operators' hub would receive them.

    Workers (`nsm worker --hub-url http://HOST:PORT`, predictor_node `hub_url`) emit
    `worker_to_hub`; dashboards connected here receive each update as the `update_data` event.
    """
    from nsm.app.hub import run_dev_hub

    def show(message: dict) -> None:
        data = message.get("data", {}) if isinstance(message, dict) else {}
        Console().print(f"{data.get('robot_id')} {data.get('model')}: {data.get('message')} "
                        f"(confidence {data.get('confidence')})", highlight=False)

    run_dev_hub(host, port, namespace, token or None, record, None if record else show,
                lambda url: console.print(f"hub on {url} namespace {namespace}; Ctrl-C stops"))


@app.command()
def worker(
    model: Annotated[list[Path], typer.Option(help="Model folder from `nsm ai train` (repeat for several).")],
    db_url: Annotated[str, typer.Option(help=DB_URL_HELP, envvar="NSM_DB_URL")] = DEFAULT_DB_URL,
    robot: Annotated[str | None, typer.Option(help="Only this robot_id (default: every robot).")] = None,
    hub_url: Annotated[str, typer.Option(help="Socket.IO hub, e.g. http://hub:5000 ('' = no hub).", envvar="NSM_HUB_URL")] = "",
    hub_namespace: Annotated[str, typer.Option(help="Socket.IO namespace of the hub.", envvar="NSM_HUB_NAMESPACE")] = "/",
    hub_token: Annotated[str, typer.Option(help="Token sent in the Socket.IO auth payload.", envvar="NSM_HUB_TOKEN")] = "",
    store: Annotated[bool, typer.Option(help="Also write each prediction to the `predictions` table.")] = True,
    from_start: Annotated[bool, typer.Option(help="Replay the rows already in the database first.")] = False,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds (0: run until Ctrl-C).", min=0)] = 0.0,
) -> None:
    """The Brain Worker: run telemetry models on rows as they reach the database and send
    `ai_prediction` updates to the hub (event `worker_to_hub`, README "Live predictions").

    Rows arrive from the DB bridge or the ingest service (`nsm serve`); on a robot with ROS
    the `predictor_node` does the same from the topics. The hub being down never blocks it:
    messages wait in a bounded queue (oldest dropped, counted) and it reconnects.
    """
    from nsm.app.worker import follow_database

    with one_line_errors(), console.status("waiting for telemetry") as status:
        def show(s, hub) -> None:
            hub_text = f", hub {hub.sent} sent / {hub.dropped} dropped" if hub else ""
            status.update(f"{s.rows} rows, {s.predictions} predictions, {s.skipped} skipped{hub_text}")

        run = follow_database(model, db_url, robot, hub_url, hub_namespace, hub_token, store, from_start, duration, show)
    s = run.stats
    hub_text = f", hub: {run.hub_sent} sent, {run.hub_dropped} dropped" if run.hub_sent is not None else ""
    Console().print(f"{s.rows} rows in {run.seconds:.0f} s: {s.predictions} predictions, "
                    f"{s.skipped} malformed rows skipped{hub_text}")


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="New folder for the trained policy (LeRobot layout) and training/ logs.")],
    dataset: Annotated[Path | None, typer.Option(help="LeRobotDataset folder (e.g. runs/collect/lerobot from "
                                                      "`nsm sim collect`).")] = None,
    repo_id: Annotated[str, typer.Option(help="The dataset's repo_id (as given when it was made).")] = "local/nsm_sim_pick_place",
    preset: Annotated[str, typer.Option(help="cpu: small transformer, chunk 30, lr 1e-4, random-shift "
                                             "augmentation, 8000 steps (~1 h on 2 cores at 96x128); full: LeRobot's "
                                             "ACT defaults, 100k steps (a GPU).")] = "cpu",
    steps: Annotated[int | None, typer.Option(help="Training steps (default: the preset's).", min=1)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: the preset's).", min=1)] = None,
    device: Annotated[str, typer.Option(help="auto (cuda when there is one), cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Training seed.")] = 1000,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes (0: in the training process).", min=0)] = 0,
    robot: Annotated[str, typer.Option(help="Robot contract the dataset must match (joints, cameras, image sizes).")] = "so101",
    state_noise: Annotated[float | None, typer.Option(help="Sd (rad) of the noise put on each training item's joint "
                                                           "state, the actions left as recorded, so the policy takes "
                                                           "its target from the images instead of copying the state "
                                                           "(default: the preset's; 0: none).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT's run that stopped (interrupted, killed, "
                                                          "crashed) from its last checkpoint (saved every quarter of "
                                                          "the steps), with the settings it was started with.")] = False,
    models: Annotated[int, typer.Option(help="Models of the recipe to train, with seeds seed, seed+1, ..., kept "
                                             "as one policy in OUT whose chunk is the mean of theirs (`nsm policy "
                                             "ensemble`). On a CPU they train side by side, the cores split between "
                                             "them; 2 with the cpu preset: about twice one model's success "
                                             "(README).", min=1)] = 1,
    backbone_norm: Annotated[str, typer.Option(help="How the from-scratch ResNet normalizes: batch (BatchNorm "
                                                    "that learns; the model loads in LeRobot's stock ACT) or group "
                                                    "(GroupNorm, the same in training and eval; nsm loads it, "
                                                    "LeRobot's stock ACT cannot).")] = "batch",
) -> None:
    """Train ACT on a LeRobotDataset with LeRobot's own training script (`lerobot-train`), offline.

    Writes a policy folder that `nsm eval`, `nsm demo --policy`, `nsm policy export` and the
    policy node load, plus MODEL/training/ (LeRobot's checkpoints, loss.csv, loss.png).
    The ResNet18 backbone starts from scratch (nothing is downloaded) and its BatchNorm
    learns while training (LeRobot freezes it, right only for ImageNet weights); the model
    is LeRobot's ACT as saved, loadable by LeRobot itself (with --backbone-norm group: by nsm).
    """
    from nsm.policy.train import resume_models, train_models

    with one_line_errors():
        if resume == (dataset is not None):
            raise NsmError("give --dataset to start a run, or --resume (without --dataset) to continue OUT's run")
        with Progress(TextColumn("[bold]train {task.fields[model]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("steps, loss {task.fields[loss]}"), TimeRemainingColumn(), console=console,
                      transient=True) as progress:
            tasks: dict[int, TaskID] = {}

            def follow(k: int, step: int, total: int, loss: float) -> None:
                if k not in tasks:
                    tasks[k] = progress.add_task("train", total=total, loss="-", model=f"model {k + 1}")
                progress.update(tasks[k], completed=step, total=total, loss=f"{loss:.3f}")

            if resume:
                results = resume_models(out, follow)
            else:
                results = train_models(dataset, out, models, seed, follow, repo_id=repo_id, preset=preset, steps=steps,
                                       batch_size=batch_size, device=device, num_workers=workers, robot=robot,
                                       state_noise=state_noise, backbone_norm=backbone_norm)
    for result in results:
        Console().print(f"trained ACT for {result.steps} steps in {result.seconds / 60:.1f} min on {result.device} "
                        f"({result.dataset_episodes} episodes, {result.dataset_frames} frames), final loss "
                        f"{result.final_loss:.3f}: {result.model} (loss curve: {result.model / 'training' / 'loss.png'})")
    if len(results) > 1 or (out / "members").is_dir():
        Console().print(f"{out}: one policy, the mean of its models' chunks (nsm_ensemble.json)")


@app.command("eval")
def eval_policy(
    model: Annotated[Path, typer.Option(help="Trained policy folder (from `nsm train`).")],
    episodes: Annotated[int, typer.Option(help="Episodes to run, on seeds seed..seed+N-1.", min=1)] = 20,
    seed: Annotated[int, typer.Option(help="First seed; collection uses 0.., so 1000.. are held out.")] = 1000,
    backend: Annotated[str, typer.Option(help="onnxruntime (exported on first use), onnxruntime-int8 (`nsm policy "
                                              "export --format onnx-int8` first), torch or tensorrt: what the robot "
                                              "runs.")] = "onnxruntime",
    seconds: Annotated[float, typer.Option(help="Length of each episode (the expert needs 9.5 s).", min=0.1)] = 12.0,
    out: Annotated[Path | None, typer.Option(help="Folder for the episodes, eval.json and eval_sheet.png. Default: "
                                                  "MODEL/eval-<backend> (--ros: MODEL/eval-nodes-<backend>).")] = None,
    ros: Annotated[bool, typer.Option("--ros", help="Run it through the deployed nodes instead: the bringup graph as "
                                                    "processes over DDS, a new world per episode set by `seed` + "
                                                    "lifecycle (nsm.ros.evaluate; needs ROS 2's rclpy).")] = False,
    merge: Annotated[str | None, typer.Option(help="How overlapping chunks combine: replace (newest wins, LeRobot's; "
                                                   "the default) | ensemble (ACT's temporal ensembling; with "
                                                   "--threshold 1 a chunk every step) | blend.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Ask for the next chunk when fewer than threshold x chunk "
                                                         "size actions remain (default 0.5: every half chunk).")] = None,
) -> None:
    """Evaluate a policy in the simulated pick-and-place scene through the robot's runtime.

    Same async chunk runtime, backend, safety filter and recorder as on the robot, on seeds
    training did not see; prints the success rate with a Wilson 95% interval and the time to
    success, and writes a contact sheet of one success and one failure. `--ros` runs the
    same seeds through what `ros2 launch nsm bringup.launch.py` starts.
    """
    from nsm.app.evaluate import Evaluator

    if ros:  # the ROS side lives in nsm.ros, which the CLI never imports: run it as its own process
        if merge is not None or threshold is not None:
            raise typer.BadParameter("through the nodes the runtime is set in the nodes' YAML (arm_driver_node.merge, "
                                     "policy_node.threshold); drop --merge/--threshold with --ros")
        out = out or model / f"eval-nodes-{backend}"
        raise typer.Exit(subprocess.call([sys.executable, "-m", "nsm.ros.evaluate", "--model", str(model),
                                          "--episodes", str(episodes), "--seed", str(seed), "--seconds", str(seconds),
                                          "--backend", backend, "--out", str(out)]))
    with one_line_errors():
        evaluator = Evaluator(model, episodes, out or model / f"eval-{backend}", seed, backend, seconds,
                              merge=merge, threshold=threshold)
        with Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TextColumn("control steps"),
                      TimeRemainingColumn(), console=console, transient=True) as progress:
            task = progress.add_task("eval", total=evaluator.total_steps)
            r = evaluator.run(lambda n: progress.update(task, completed=n))
    low, high = r.wilson95
    Console().print(f"{r.successes}/{r.episodes} successful ({100 * r.success_rate:.0f}%, Wilson 95% "
                    f"{100 * low:.0f}-{100 * high:.0f}%) on seeds {r.seeds}, backend {r.backend}; time to success "
                    f"{r.mean_seconds_to_success if r.mean_seconds_to_success is not None else '-'} s; "
                    f"inference p50 {r.inference_ms_p50} ms. {r.out}/eval.json, {r.sheet}")


dataset_app = typer.Typer(help="Recorded episodes: inspect, view, play, plot, convert for training or to bags, "
                               "recover after a crash.",
                          no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("inspect")
def dataset_inspect(
    folder: Annotated[Path, typer.Argument(help="Folder of episode_<n>.hdf5 files (e.g. runs/episodes).")],
    verify: Annotated[bool, typer.Option(help="Recompute each episode's SHA-256 (reads every frame).")] = False,
) -> None:
    """A table of the episodes in FOLDER: frames, duration, cameras, outcome, integrity."""
    from nsm.app.datasets import inspect_folder

    table = Table(title=str(folder), title_justify="left")
    for column in ("episode", "frames", "seconds", "cameras", "policy", "success", "sha256"):
        table.add_column(column)
    with one_line_errors():
        rows = inspect_folder(folder, verify)
    for row in rows:
        if row.info is None:
            table.add_row(row.path.name, "", "", "", "", "", "[yellow]partial: run `nsm dataset recover`[/]")
            continue
        i = row.info
        integrity = "[red]MISMATCH[/]" if row.integrity == "MISMATCH" else row.integrity[:16]
        table.add_row(row.path.name, str(i.frames), f"{i.seconds:.1f}", ", ".join(i.cameras), i.policy, i.success,
                      integrity)
    Console().print(table)


@dataset_app.command("convert")
def dataset_convert(
    folder: Annotated[Path, typer.Argument(help="Folder of episode_<n>.hdf5 files.")],
    out: Annotated[Path, typer.Option(help="New folder for the LeRobotDataset.")],
    repo_id: Annotated[str, typer.Option(help="Dataset name LeRobot knows it by (nothing is uploaded).")] = "local/nsm",
    task: Annotated[str, typer.Option(help="Task description stored with every frame.")] = "pick up the cube",
    videos: Annotated[bool, typer.Option(help="Store cameras as MP4 video (LeRobot's default) instead of PNG frames.")] = True,
    image_size: DatasetImageSize = DEFAULT_DATASET_IMAGE_SIZE,
) -> None:
    """Convert HDF5 episodes into a LeRobotDataset (v3) with LeRobot's own API, for training.

    Load it with `LeRobotDataset(repo_id, root=out)`; train with LeRobot's scripts
    (`--dataset.repo_id=<repo_id> --dataset.root=<out>`).
    """
    from nsm.app.datasets import closed_episodes, total_frames
    from nsm.recording.lerobot_convert import hdf5_to_lerobot

    with one_line_errors():
        episodes = closed_episodes([folder])
        total = total_frames(episodes)
        with Progress(TextColumn("[bold]convert"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                      TimeRemainingColumn(), console=console, transient=True) as progress:
            task_id = progress.add_task("convert", total=total)
            hdf5_to_lerobot(episodes, out, repo_id, task, videos, on_frame=lambda: progress.advance(task_id),
                            image_size=_dataset_image_size(image_size))
    Console().print(f"LeRobotDataset {repo_id} with {len(episodes)} episodes, {total} frames in {out}")


@dataset_app.command("from-bag")
def dataset_from_bag(
    bags: Annotated[list[Path], typer.Argument(help="rosbag2 bag folders (MCAP or SQLite storage).")],
    out: Annotated[Path, typer.Option(help="Folder for the episode_<n>.hdf5 files (then `nsm dataset convert` it).")],
    robot: Annotated[str | None, typer.Option(help="Robot contract, for bags without robot_contract.yaml.")] = None,
    max_skew: Annotated[float, typer.Option(help="Seconds a stream may be from a control tick; ticks beyond are left "
                                                 "out.")] = 0.05,
) -> None:
    """Resample rosbag2 bags at the control rate into HDF5 episodes (nearest message per tick)."""
    from nsm.contract import load_contract
    from nsm.recording.bag_convert import bag_to_hdf5
    from nsm.recording.episodes import next_episode_path

    with one_line_errors():
        contract = load_contract(robot) if robot else None
        out.mkdir(parents=True, exist_ok=True)
        for bag in bags:
            result = bag_to_hdf5(bag, next_episode_path(out), contract, max_skew)
            Console().print(f"{bag} -> {result.path}: {result.frames} frames, {result.skipped_ticks} ticks left out "
                            f"(a stream further than {max_skew} s)")


@dataset_app.command("plot")
def dataset_plot(
    episodes: Annotated[list[Path], typer.Argument(help="episode_<n>.hdf5 files, or a folder of them.")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG files.")] = Path("runs/plots"),
    frames: Annotated[int, typer.Option(help="Frames per camera in the contact sheet.", min=1)] = 8,
) -> None:
    """Joint traces (state vs commanded action, per joint) and a contact sheet of camera frames, as PNG."""
    from nsm.app.datasets import closed_episodes
    from nsm.plots import plot_episode

    with one_line_errors():
        for path in closed_episodes(episodes):
            for png in plot_episode(path, out, frames):
                Console().print(f"wrote {png}")


@dataset_app.command("to-bag")
def dataset_to_bag(
    source: Annotated[Path, typer.Argument(help="An episode_<n>.hdf5, a folder of them, or a LeRobotDataset.")],
    out: Annotated[Path, typer.Option(help="Folder for the bags (one episode_<n>/ each).")],
    episode: Annotated[int | None, typer.Option(help="Only episode_<n>.")] = None,
    bag_images: Annotated[str, typer.Option(help="jpeg: sensor_msgs/CompressedImage on image_raw/compressed; raw: "
                                                 "sensor_msgs/Image rgb8 on image_raw (lossless, ~10x larger).")] = "jpeg",
    zstd: Annotated[bool, typer.Option(help="Compress the MCAP chunks with zstd.")] = False,
) -> None:
    """Episodes as rosbag2 bags (MCAP storage) with standard messages, for `ros2 bag play`, RViz and Foxglove.

    The same topics as `nsm demo --bag` records: /nsm/joint_states, /nsm/joint_commands,
    /nsm/action_chunk and each camera; `nsm dataset from-bag` turns them back into episodes.
    """
    from nsm.app.datasets import to_bags
    from nsm.recording.sources import find_episodes

    with one_line_errors():
        sources = find_episodes(source, episode)
        with Progress(TextColumn("[bold]to-bag"), BarColumn(), MofNCompleteColumn(), TextColumn("episodes"),
                      TimeRemainingColumn(), console=console, transient=True) as progress:
            task = progress.add_task("to-bag", total=len(sources))
            bags = to_bags(sources, out, bag_images, "zstd" if zstd else None, lambda _: progress.advance(task))
    for bag in bags:
        Console().print(f"wrote {bag}", soft_wrap=True)


@dataset_app.command("play")
def dataset_play(
    source: Annotated[Path, typer.Argument(help="An episode_<n>.hdf5, a bag, a LeRobotDataset, or a folder of episodes.")],
    episode: Annotated[int | None, typer.Option(help="Only episode_<n>.")] = None,
    rate: Annotated[float, typer.Option(help="Playback speed: 2 plays twice as fast.")] = 1.0,
    loop: Annotated[bool, typer.Option(help="Play again and again until Ctrl-C.")] = False,
    namespace: Annotated[str, typer.Option(help="The robot's namespace (bringup's default).")] = "/nsm",
) -> None:
    """Publish recorded episodes on the robot's topics at their recorded pace, for RViz and rqt.

    joint_states, joint_commands, camera/<cam>/image_raw and action_chunk, with the live
    robot's QoS and stamps of now: `ros2 bag play` without rosbag2, for every format nsm
    reads. Needs ROS 2's Python packages (`bash scripts/setup.sh --test`, or a ROS install).
    """
    raise typer.Exit(subprocess.call([sys.executable, "-m", "nsm.ros.player", str(source), "--rate", str(rate),
                                      "--namespace", namespace, *(["--episode", str(episode)] if episode is not None
                                                                  else []), *(["--loop"] if loop else [])]))


@dataset_app.command("view")
def dataset_view(
    source: Annotated[Path, typer.Argument(help="An episode_<n>.hdf5, a rosbag2 bag folder, or a folder of either "
                                                "(e.g. runs/episodes).")],
    episode: Annotated[int | None, typer.Option(help="Only episode_<n> of the folder.")] = None,
    save: Annotated[Path | None, typer.Option(help="Write the recording(s) here and exit unless --web/--viewer: "
                                                   "a .rrd file for one episode, a folder for several.")] = None,
    web: Annotated[bool | None, typer.Option("--web/--viewer", help="Rerun's web viewer served on --host "
                                             "(default without a display), or its native viewer.")] = None,
    host: Annotated[str, typer.Option(help="Address the web viewer listens on (0.0.0.0: other machines too).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The web viewer's HTTP port.")] = 9090,
    grpc_port: Annotated[int, typer.Option(help="The port the web viewer loads the recordings from.")] = 9876,
) -> None:
    """Review episodes in Rerun: every camera, each joint's state and command, and the action chunks
    the policy predicted, on the recorded time axis.

    Each episode becomes one Rerun recording (.rrd). Open one later with `rerun FILE.rrd`, or
    share it. Examples:

      nsm dataset view runs/episodes                    # shown now (web viewer on localhost without a display)
      nsm dataset view runs/episodes --save runs/views  # one .rrd per episode, no viewer
      nsm dataset view runs/episodes/episode_0 --web    # a rosbag2 bag recorded by `nsm demo --bag`
    """
    import signal

    from nsm.app.view import has_display, save_views, send_views, show
    from nsm.recording.sources import find_episodes
    from nsm.viewer.server import grpc_url, serve_live, web_url

    with one_line_errors():
        episodes = find_episodes(source, episode)
    rrds: list[Path] = []
    if save is not None:
        with one_line_errors(), _progress("view", len(episodes), "episodes") as advance:
            rrds = save_views(episodes, save, on_episode=lambda _: advance())
        for rrd in rrds:
            Console().print(f"wrote {rrd}", soft_wrap=True)
        if web is None:
            return
    web = not has_display() if web is None else web
    if not web and not rrds:
        raise typer.Exit(_native_viewer(episodes))
    with one_line_errors():
        viewer = serve_live(port, grpc_port, host) if web else show(rrds)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped like Ctrl-C: the viewer goes too
        try:
            if web:
                with _progress("send", len(episodes), "episodes") as advance:
                    send_views(episodes, grpc_url(host, grpc_port), on_episode=lambda _: advance())
                Console().print(f"Rerun web viewer: {web_url(host, port, grpc_port)} (Ctrl-C to stop)", soft_wrap=True)
            code = viewer.wait()
        except KeyboardInterrupt:
            code = 130
        finally:
            if viewer.poll() is None:
                viewer.terminate()
                viewer.wait()
    raise typer.Exit(code)


def _native_viewer(episodes) -> int:
    """The native viewer on recordings written to a scratch folder for it."""
    import tempfile

    from nsm.app.view import save_views, show

    with tempfile.TemporaryDirectory(prefix="nsm-view-") as scratch:
        with one_line_errors():
            rrds = save_views(episodes, Path(scratch))
        viewer = show(rrds)
        try:
            return viewer.wait()
        except KeyboardInterrupt:
            viewer.terminate()
            return viewer.wait()


@contextmanager
def _progress(label: str, total: int, unit: str):
    """A transient progress bar on stderr; yields `advance()`."""
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


@dataset_app.command("recover")
def dataset_recover(
    path: Annotated[Path, typer.Argument(help="An episode_<n>.hdf5.partial file, or a folder to recover every one in.")],
) -> None:
    """Turn `*.partial` episodes left by a crash into valid episodes, truncated to their last flush."""
    from nsm.app.datasets import partial_episodes
    from nsm.recording.episodes import episode_info
    from nsm.recording.recover import recover

    with one_line_errors():
        for partial in partial_episodes(path):
            final = recover(partial)
            Console().print(f"recovered {final} ({episode_info(final).frames} frames)")


def _print_summary(s) -> None:
    table = Table(title="nsm demo", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    done = [ok for ok in s.successes if ok is not None]
    table.add_row("episodes", f"{len(s.episodes)}, task succeeded in {sum(done)}/{len(done)}")
    table.add_row("frames recorded", f"{s.frames} (dropped {s.dropped_frames})")
    table.add_row("control period", f"p50 {s.percentile(50):.2f} ms, p99 {s.percentile(99):.2f} ms, max "
                                    f"{s.period_ms.max():.2f} ms")
    table.add_row("camera fps (rendered)", ", ".join(f"{k} {v:.1f}" for k, v in s.camera_fps.items()))
    if len(s.inference_ms):
        table.add_row("policy", f"{s.chunks} chunks, inference p50 {float(np.median(s.inference_ms)):.2f} ms, "
                                f"{s.empty_ticks} ticks held (empty queue)")
    table.add_row("safety", f"{s.rejected_commands} commands rejected")
    if s.view_url:
        table.add_row("live view", f"{s.view_url} ({s.view_dropped} ticks dropped by the view, none waited for)")
    t = s.telemetry
    table.add_row("telemetry rows", f"{t.written} written, {t.spooled} spooled, {t.dropped} dropped")
    table.add_row("database", s.db_url)
    for path in s.episodes:
        table.add_row("episode file", str(path))
    for path in s.bags:
        table.add_row("rosbag2 (MCAP)", str(path))
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
