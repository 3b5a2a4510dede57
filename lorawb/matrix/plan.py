"""A matrix in its project: the spec resolved and its cells enumerated (no torch here).

``plan_matrix(folder)`` is what every reader of a matrix starts from: the CLI's ``show``,
the Matrix tab, the contact sheet and the matrix process itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from lorawb.core.project import Project
from lorawb.matrix.cells import Cell, Layout, Params, enumerate_cells
from lorawb.matrix.folder import MatrixFolder
from lorawb.matrix.requests import ImageRequest
from lorawb.matrix.resolve import Context, resolve
from lorawb.matrix.settings import MatrixSettings, matrix_settings
from lorawb.matrix.spec import MatrixSpec, load_spec


@dataclass
class Plan:
    """What a matrix asks for in its project, resolved and enumerated (no torch needed)."""

    project: Project
    folder: MatrixFolder
    spec: MatrixSpec
    ctx: Context
    layout: Layout
    settings: MatrixSettings

    @property
    def cells(self) -> list[Cell]:
        return list(self.layout.cells.values())

    def pending(self) -> list[Cell]:
        done = self.folder.done_ids()
        return [c for c in self.layout.cells.values() if c.id not in done]

    def request(self, params: Params) -> ImageRequest:
        return request_for(self.project, params)


def plan_matrix(folder: MatrixFolder, project: Project | None = None) -> Plan:
    project = project or Project.load(folder.path)
    spec = load_spec(folder.spec)
    ctx = resolve(spec, project)
    return Plan(project, folder, spec, ctx, enumerate_cells(spec, ctx.resolved), matrix_settings(project))


def request_for(project: Project, p: Params) -> ImageRequest:
    loras = tuple((str(project.resolve(ref.path)), float(w)) for ref, w in p.all_loras())
    return ImageRequest(
        prompt=p.prompt,
        seed=p.seed,
        negative=p.negative,
        width=p.width,
        height=p.height,
        steps=p.steps,
        cfg=p.cfg,
        sampler=p.sampler,
        loras=loras,
    )
