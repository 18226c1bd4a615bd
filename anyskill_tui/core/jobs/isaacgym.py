"""The Isaac Gym engine: drive a reference AnySkill checkout's ``calm/run.py`` as the runner's child.

For users who already have the reference stack (Isaac Gym Preview, Python <= 3.8, rl_games). Nothing of
ours is imported by that interpreter: the child only writes files (rl_games' tensorboardX summaries and
``.pth`` checkpoints under ``--output_path RUN_DIR/output``); the runner (ours, Python 3.11) tails them,
registers the checkpoints as Checkpoint rows as they appear and records the run's status.

:func:`build_command` / :func:`build_commands` build the seed README's command lines as argv lists, flag
for flag and in the README's order, with what a detached run needs appended: ``--headless`` and
``--output_path RUN_DIR/output`` for training, and ``--resume 1 --checkpoint C`` to continue from C.

``--track``: the README passes it everywhere. The reference's high-level agents call ``wandb.log`` on
every step without a guard, so without ``--track`` (which calls ``wandb.init``) those tasks crash
(docs/anyskill-spec.md §9.3). So ``track=None`` (the default) means: on for the skill variants, off for the
LLC. The runner always sets ``WANDB_MODE=offline``: nothing is uploaded and no login is asked for.

Metrics that are NOT available in our charts for Isaac Gym runs: the CLIP terms the reference logs only to
wandb (``info/clip_similarity`` (which is really the delta), ``info/delta``, ``reward/spec_anyskill_reward``,
``reward/spec_aux_reward``); they stay in the offline wandb files of the checkout (``wandb/offline-run-*``;
``wandb sync`` uploads them). rl_games' TensorBoard scalars (``rewards0/*``, ``losses/*``, ``info/*``,
``performance/*``, see spec §8.2) are tailed as usual.

Run config keys (``Run.config`` of an ``engine=isaacgym`` run):

``anyskill_repo`` (required) the checkout; ``isaacgym_python`` (default ``ANYSKILL_ISAACGYM_PYTHON`` or
``python``); ``variant`` (``llc`` | ``skill`` | ``rigid`` | ``articulated``; default from the run kind);
``motion_file`` (required); ``llc_checkpoint`` (required for the skill variants); ``texts``
(``[{text, weight}]``; default: the run's skill); ``reward`` (``render`` adds ``--render``); ``track``;
``num_envs``; ``max_iterations``; ``extra_args`` (list, appended); ``check_isaacgym`` (default true);
``stop_grace_s`` (default 10).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyskill_tui.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from anyskill_tui.core.jobs.trainers import TrainContext
    from anyskill_tui.store.models import Run

PYTHON_ENV = "ANYSKILL_ISAACGYM_PYTHON"
DEFAULT_PYTHON = "python"
RUN_PY = "calm/run.py"
OUTPUT_SUBDIR = "output"
TEXTS_NAME = "texts.yaml"

CFG_ENV_LLC = "calm/data/cfg/humanoid.yaml"
CFG_TRAIN_LLC = "calm/data/cfg/train/rlg/calm_humanoid.yaml"
CFG_ENV_HLC = "calm/data/cfg/humanoid_anyskill.yaml"
CFG_TRAIN_HLC = "calm/data/cfg/train/rlg/spec_anyskill.yaml"
CFG_TRAIN_SCENE = "calm/data/cfg/train/rlg/scene_anyskill.yaml"


@dataclass(frozen=True)
class Variant:
    """One of the README's tasks."""

    task: str
    cfg_env: str
    cfg_train: str
    hlc: bool
    wandb_project_name: str | None = None
    articulated: bool = False


VARIANTS: dict[str, Variant] = {
    "llc": Variant("HumanoidAMPGetup", CFG_ENV_LLC, CFG_TRAIN_LLC, hlc=False),
    "skill": Variant("HumanoidSpecAnySKill", CFG_ENV_HLC, CFG_TRAIN_HLC, hlc=True, wandb_project_name="special_policy"),
    "rigid": Variant(
        "HumanoidSpecAnySKillRigid", CFG_ENV_HLC, CFG_TRAIN_HLC, hlc=True, wandb_project_name="special_policy_scene"
    ),
    "articulated": Variant(
        "HumanoidSpecAnySKillArti",
        CFG_ENV_HLC,
        CFG_TRAIN_SCENE,
        hlc=True,
        wandb_project_name="special_policy_scene",
        articulated=True,
    ),
}


def _variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UserError(f"unknown Isaac Gym variant {name!r} (choose from {', '.join(VARIANTS)})") from None


def build_command(
    variant: str,
    *,
    motion_file: str | Path,
    test: bool = False,
    python: str = DEFAULT_PYTHON,
    llc_checkpoint: str | Path | None = None,
    text_file: str | Path | None = None,
    checkpoint: str | Path | None = None,
    output_path: str | Path | None = None,
    render: bool = False,
    track: bool | None = None,
    headless: bool | None = None,
    num_envs: int | None = None,
    max_iterations: int | None = None,
    resume_from: str | Path | None = None,
    wandb_project_name: str | None = None,
    cfg_env: str | None = None,
    cfg_train: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv of one README command (``python calm/run.py ...``), run from the checkout's root.

    ``test=True`` builds the README's playback command (``--test --num_envs 16 ... --checkpoint C``).
    Training gets ``--headless`` and ``--output_path`` appended (when ``output_path`` is given);
    ``resume_from`` appends ``--resume 1 --checkpoint C``. See the module doc for ``track``.
    """
    v = _variant(variant)
    track = v.hlc if track is None else track
    headless = (not test) if headless is None else headless
    cfg_env = cfg_env or v.cfg_env
    cfg_train = cfg_train or v.cfg_train
    argv = [python, RUN_PY]
    if v.hlc:
        if llc_checkpoint is None:
            raise UserError(f"the {variant} task needs an LLC checkpoint (--llc-checkpoint PATH)")
        if text_file is None:
            raise UserError(f"the {variant} task needs a prompt file (texts.yaml)")
    if test:
        if checkpoint is None:
            raise UserError("testing a policy needs its checkpoint (--checkpoint PATH)")
        n = str(num_envs if num_envs is not None else 16)
        if v.hlc:
            argv += ["--test", "--num_envs", n, "--task", v.task]
        else:
            argv += ["--test", "--task", v.task, "--num_envs", n]
    else:
        argv += ["--task", v.task]
    argv += ["--cfg_env", cfg_env, "--cfg_train", cfg_train, "--motion_file", str(motion_file)]
    if v.hlc:
        argv += ["--llc_checkpoint", str(llc_checkpoint)]
        if test:
            if track:
                argv.append("--track")
            if render:
                argv.append("--render")
            if v.articulated:
                argv.append("--articulated")
            argv += ["--text_file", str(text_file)]
        else:
            if track:
                argv.append("--track")
            argv += ["--text_file", str(text_file)]
            argv += ["--wandb_project_name", wandb_project_name or str(v.wandb_project_name)]
            if v.articulated:
                argv.append("--articulated")
            if render:
                argv.append("--render")
    elif track and not test:
        argv.append("--track")
        if wandb_project_name:
            argv += ["--wandb_project_name", wandb_project_name]
    if test:
        argv += ["--checkpoint", str(checkpoint)]
    if headless:
        argv.append("--headless")
    if output_path is not None and not test:
        argv += ["--output_path", str(output_path)]
    if not test and num_envs is not None:
        argv += ["--num_envs", str(num_envs)]
    if max_iterations is not None and not test:
        argv += ["--max_iterations", str(int(max_iterations))]
    if resume_from is not None and not test:
        argv += ["--resume", "1", "--checkpoint", str(resume_from)]
    argv += list(extra_args)
    return argv


def build_commands(variant: str, **kwargs: Any) -> dict[str, list[str]]:
    """``{"train": argv}`` plus ``"test": argv`` when a ``checkpoint`` is given (see :func:`build_command`)."""
    checkpoint = kwargs.pop("checkpoint", None)
    out = {"train": build_command(variant, **kwargs)}
    if checkpoint is not None:
        test_kw = {k: v for k, v in kwargs.items() if k not in ("output_path", "resume_from", "max_iterations")}
        test_kw.pop("num_envs", None)
        out["test"] = build_command(variant, test=True, checkpoint=checkpoint, **test_kw)
    return out


def texts_yaml(prompts: Sequence[tuple[str, float]]) -> str:
    """AnySkill's prompt file: ``texts: [{text, weight}]`` (spec §2.2)."""
    import yaml

    return yaml.safe_dump(
        {"texts": [{"text": str(t), "weight": float(w)} for t, w in prompts]}, sort_keys=False, allow_unicode=True
    )


def write_texts_yaml(run_dir: Path | str, prompts: Sequence[tuple[str, float]]) -> Path:
    """Write ``RUN_DIR/texts.yaml`` (atomically) and return its path."""
    from anyskill_tui.core.jobs.checkpoints import atomic_write_bytes

    if not prompts:
        raise UserError("an Isaac Gym skill run needs at least one prompt")
    path = Path(run_dir) / TEXTS_NAME
    return atomic_write_bytes(path, texts_yaml(prompts).encode())


# ---------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------


def resolve_python(python: str | None = None) -> str:
    """The Isaac Gym interpreter: ``python``, else ``ANYSKILL_ISAACGYM_PYTHON``, else ``python``."""
    return python or os.environ.get(PYTHON_ENV, "").strip() or DEFAULT_PYTHON


def check_checkout(repo: Path | str | None) -> Path:
    """The checkout's absolute path; UserError when it is missing or has no ``calm/run.py``."""
    if not repo:
        raise UserError("an Isaac Gym run needs the AnySkill checkout: pass --anyskill-repo PATH")
    p = Path(repo).expanduser().absolute()
    if not p.is_dir():
        raise UserError(f"the AnySkill checkout {p} does not exist; pass --anyskill-repo PATH to a clone of AnySkill")
    if not (p / RUN_PY).is_file():
        raise UserError(f"{p} is not an AnySkill checkout (no {RUN_PY}); pass --anyskill-repo PATH to its root")
    return p


def check_python(python: str, *, check_isaacgym: bool = True, env: dict[str, str] | None = None) -> str:
    """The interpreter's full path; UserError when it is missing or cannot ``import isaacgym``."""
    exe = shutil.which(python) if os.sep not in python else (python if os.access(python, os.X_OK) else None)
    if exe is None:
        raise UserError(
            f"the Isaac Gym interpreter {python!r} was not found; pass --isaacgym-python PATH or set {PYTHON_ENV} "
            "to the python of your Isaac Gym environment"
        )
    if check_isaacgym:
        try:
            res = subprocess.run(
                [exe, "-c", "import isaacgym"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserError(f"could not run {exe} -c 'import isaacgym' ({exc})") from None
        if res.returncode != 0:
            lines = [ln for ln in (res.stderr or "").strip().splitlines() if ln.strip()]
            why = lines[-1].strip() if lines else f"exit code {res.returncode}"
            raise UserError(
                f"{exe} cannot import isaacgym ({why}); install Isaac Gym into that environment "
                f"(cd isaacgym/python && pip install -e .) or point --isaacgym-python / {PYTHON_ENV} at the "
                "interpreter that has it"
            )
    return exe


# ---------------------------------------------------------------------------------------------------
# Checkpoints written by rl_games
# ---------------------------------------------------------------------------------------------------

_PTH_STEP = re.compile(r"_(\d+)\.pth$")


def pth_files(run_dir: Path | str) -> list[Path]:
    """``RUN_DIR/output/*/nn/*.pth``, oldest first (by modification time)."""
    found = [p for p in Path(run_dir, OUTPUT_SUBDIR).glob("*/nn/*.pth") if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def pth_epoch(path: Path | str) -> int | None:
    """The epoch in ``Humanoid_00014500.pth`` (14500); None for ``Humanoid.pth``."""
    m = _PTH_STEP.search(Path(path).name)
    return int(m.group(1)) if m else None


def latest_pth(run_dir: Path | str) -> Path | None:
    """The most recently written non-empty ``.pth`` of a run, or None."""
    files = [p for p in pth_files(run_dir) if p.stat().st_size > 0]
    return files[-1] if files else None


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGKILL when the runner dies, so a kill -9 of the runner leaves no trainer."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------------


@dataclass
class IsaacGymJob:
    """Runs one Isaac Gym training as the runner's child and mirrors its outputs into the library."""

    ctx: TrainContext
    repo: Path
    python: str
    variant: str
    motion_file: str
    llc_checkpoint: str | None = None
    prompts: list[tuple[str, float]] = field(default_factory=list)
    render: bool = False
    track: bool | None = None
    num_envs: int | None = None
    max_iterations: int | None = None
    extra_args: list[str] = field(default_factory=list)
    check_isaacgym: bool = True
    stop_grace_s: float = 10.0
    poll_s: float = 1.0
    registered: set[Path] = field(default_factory=set)
    _pending: dict[Path, int] = field(default_factory=dict)
    _last_epoch: int = 0

    @classmethod
    def from_run(cls, ctx: TrainContext, run: Run) -> IsaacGymJob:
        """Build the job from an ``engine=isaacgym`` Run's config (keys in the module doc)."""
        cfg = ctx.config
        variant = str(cfg.get("variant") or ("llc" if run.kind == "llc" else "skill"))
        _variant(variant)
        if run.kind == "proxy":
            raise UserError("the Isaac Gym engine trains LLCs and skills, not the CLIP proxy")
        motion_file = cfg.get("motion_file")
        if not motion_file:
            raise UserError("an Isaac Gym run needs a motion file (config motion_file / --motion-file)")
        prompts: list[tuple[str, float]] = []
        for item in cfg.get("texts") or []:
            if isinstance(item, dict):
                prompts.append((str(item["text"]), float(item.get("weight", 1.0))))
            else:
                prompts.append((str(item), 1.0))
        if not prompts and run.skill_id is not None and ctx.library is not None:
            sk = ctx.library.get_skill(run.skill_id)
            prompts = [(sk.text, sk.weight)]
        return cls(
            ctx=ctx,
            repo=Path(str(cfg.get("anyskill_repo") or "")),
            python=resolve_python(cfg.get("isaacgym_python")),
            variant=variant,
            motion_file=str(motion_file),
            llc_checkpoint=str(cfg["llc_checkpoint"]) if cfg.get("llc_checkpoint") else None,
            prompts=prompts,
            render=str(cfg.get("reward", "")) == "render" or bool(cfg.get("render", False)),
            track=cfg.get("track"),
            num_envs=int(cfg["num_envs"]) if cfg.get("num_envs") else None,
            max_iterations=int(cfg["max_iterations"]) if cfg.get("max_iterations") else None,
            extra_args=[str(a) for a in cfg.get("extra_args") or []],
            check_isaacgym=bool(cfg.get("check_isaacgym", True)),
            stop_grace_s=float(cfg.get("stop_grace_s", 10.0)),
        )

    @property
    def run_dir(self) -> Path:
        return self.ctx.run_dir

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["WANDB_MODE"] = "offline"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def command(self, python_exe: str | None = None) -> list[str]:
        """The argv the job runs (resuming from the newest ``.pth`` in the run dir, if any)."""
        hlc = _variant(self.variant).hlc
        return build_command(
            self.variant,
            python=python_exe or self.python,
            motion_file=self.motion_file,
            llc_checkpoint=self.llc_checkpoint,
            text_file=str(self.run_dir / TEXTS_NAME) if hlc else None,
            output_path=str(self.run_dir / OUTPUT_SUBDIR),
            render=self.render,
            track=self.track,
            num_envs=self.num_envs,
            max_iterations=self.max_iterations,
            resume_from=latest_pth(self.run_dir),
            extra_args=self.extra_args,
        )

    def prepare(self) -> list[str]:
        """Check the checkout and interpreter, write texts.yaml; return the argv."""
        self.repo = check_checkout(self.repo)
        check_python(self.python, check_isaacgym=self.check_isaacgym, env=self.child_env())
        if _variant(self.variant).hlc:
            write_texts_yaml(self.run_dir, self.prompts)
        (self.run_dir / OUTPUT_SUBDIR).mkdir(parents=True, exist_ok=True)
        # Checkpoints already there (a resumed run) were registered by the previous session.
        self.registered.update(pth_files(self.run_dir))
        return self.command()

    def scan(self, final: bool = False) -> None:
        """Register new numbered ``.pth`` files once their size is stable; follow the epoch for progress."""
        from anyskill_tui.core.jobs.metrics import MetricsTail

        if not hasattr(self, "_tail"):
            self._tail = MetricsTail(self.run_dir, globs=("output/*/summaries/events.out.tfevents.*",))
        new = self._tail.poll()
        for tag in ("info/epochs",):
            if new.get(tag):
                self._last_epoch = max(self._last_epoch, int(new[tag][-1][2]))
        if self._last_epoch:
            self.ctx.progress(self._last_epoch, self.max_iterations)
        for p in pth_files(self.run_dir):
            if p in self.registered:
                continue
            epoch = pth_epoch(p)
            if epoch is None and not final:
                continue  # Humanoid.pth is overwritten every save_frequency: registered once, at the end
            size = p.stat().st_size
            if not final and (size == 0 or self._pending.get(p) != size):
                self._pending[p] = size  # still being written? look again next poll
                continue
            self.registered.add(p)
            self._pending.pop(p, None)
            step = epoch if epoch is not None else self._last_epoch
            if self.ctx.library is not None:
                self.ctx.library.add_checkpoint(self.ctx.run_id, str(p), step=step, metrics=self._metrics())
            print(f"[anyskill runner] registered checkpoint {p} (epoch {step})", file=sys.stderr, flush=True)

    def _metrics(self) -> dict[str, float]:
        latest = getattr(self, "_tail", None)
        if latest is None:
            return {}
        return {k: v[2] for k, v in latest.latest.items() if k.startswith(("rewards0/", "episode_lengths/"))}

    def run(self) -> None:
        """Run to the end (or until a stop is requested). Raises UserError when the child fails."""
        argv = self.prepare()
        print(f"[anyskill runner] cwd {self.repo}: {' '.join(argv)}", file=sys.stderr, flush=True)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=str(self.repo),
                env=self.child_env(),
                stdin=subprocess.DEVNULL,
                preexec_fn=_set_pdeathsig if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            )
        except OSError as exc:
            raise UserError(f"could not start {argv[0]} ({exc.strerror or exc})") from None
        stop_sent: float | None = None
        try:
            while True:
                try:
                    rc = proc.wait(timeout=self.poll_s)
                    break
                except subprocess.TimeoutExpired:
                    pass
                self.scan()
                if self.ctx.should_stop():
                    if stop_sent is None:
                        with contextlib.suppress(ProcessLookupError):
                            proc.send_signal(signal.SIGTERM)
                        stop_sent = time.monotonic()
                    elif time.monotonic() - stop_sent > self.stop_grace_s:
                        proc.kill()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.scan(final=True)
        if self.ctx.should_stop():
            return
        if rc != 0:
            raise UserError(f"calm/run.py exited with code {rc}; see train.log in {self.run_dir}")
