/**
 * The demo's figure: per dataset, mean pairwise cosine similarity and effective rank against
 * depth (log2 axis), with and without ContraNorm. Vega-Lite compiles the chart, a headless
 * Vega view renders it to SVG.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { parse, View } from 'vega';
import { compile } from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';

import type { DatasetResult } from './experiment.ts';

/** One dataset's panels, titled with its shape and ContraNorm timing. */
export interface PlotPanel {
  result: DatasetResult;
  title: string;
  subtitle: string;
}

const PLAIN = 'without ContraNorm';
const CONTRA = 'with ContraNorm';

function panelSpec(panel: PlotPanel) {
  const values = panel.result.rows
    .filter((row) => row.depth > 0)
    .flatMap((row) => [
      { depth: row.depth, arm: PLAIN, cos: row.cosPlain, erank: row.erankPlain },
      { depth: row.depth, arm: CONTRA, cos: row.cosContra, erank: row.erankContra },
    ]);
  const depths = [...new Set(values.map((v) => v.depth))];
  const chart = (field: 'cos' | 'erank', label: string) => ({
    width: 300,
    height: 200,
    mark: { type: 'line' as const, point: true },
    encoding: {
      x: {
        field: 'depth',
        type: 'quantitative' as const,
        title: 'depth (rounds)',
        scale: { type: 'log' as const, base: 2 },
        axis: { values: depths, format: 'd' },
      },
      y: { field, type: 'quantitative' as const, title: label, scale: { zero: false } },
      color: {
        field: 'arm',
        type: 'nominal' as const,
        title: null,
        scale: { domain: [PLAIN, CONTRA], range: ['#d62728', '#1f77b4'] },
      },
    },
  });
  return {
    title: { text: panel.title, subtitle: panel.subtitle, anchor: 'start' as const },
    data: { values },
    hconcat: [chart('cos', 'mean pairwise cosine similarity'), chart('erank', 'effective rank')],
  };
}

/**
 * Renders the panels (one row per dataset) to `<outDir>/oversmoothing.svg` and returns the
 * path written.
 */
export async function writePlot(
  panels: PlotPanel[],
  heading: { text: string; subtitle: string },
  outDir: string,
): Promise<string> {
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { ...heading, anchor: 'start', fontSize: 15 },
    background: 'white',
    padding: 12,
    vconcat: panels.map(panelSpec),
    config: { legend: { orient: 'top' }, concat: { spacing: 28 } },
  } as TopLevelSpec;

  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();

  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, 'oversmoothing.svg');
  writeFileSync(path, svg);
  return path;
}
