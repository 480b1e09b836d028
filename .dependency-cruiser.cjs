/**
 * The house rules of src/ (README, "Layout"): dependencies point down only.
 *
 *   core → db → http → transports → messaging → references | sagas → caretaker → dashboard
 *        → baton.ts, status.ts (the composition) → index.ts, pg.ts, testing/, adapters/ (the faces) → cli/
 *
 * Each rule names what it keeps out; `npm run lint` fails with that name.
 */
const ROOMS = [
  'core',
  'db',
  'http',
  'transports',
  'messaging',
  'references',
  'sagas',
  'caretaker',
  'dashboard',
];

/** A rule: files of `room` may import only from `allowed` rooms (and their own, and npm/node). */
function onlyDown(room, allowed) {
  const below = [room, ...allowed].join('|');
  return {
    name: `${room}-imports-only-below`,
    comment: `src/${room}/ may import only from ${allowed.length ? allowed.join(', ') : 'itself'} (the layers below it), never from a room above or beside it.`,
    severity: 'error',
    from: { path: `^src/${room}/` },
    to: { path: '^src/', pathNot: `^src/(${below})/` },
  };
}

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment:
        'No module may depend on itself through others: a cycle is a folder knowing a higher one.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    onlyDown('core', []),
    onlyDown('db', ['core']),
    onlyDown('http', ['core', 'db']),
    onlyDown('transports', ['core', 'db', 'http']),
    onlyDown('messaging', ['core', 'db', 'http', 'transports']),
    onlyDown('references', ['core', 'db', 'http', 'transports', 'messaging']),
    onlyDown('sagas', ['core', 'db', 'http', 'transports', 'messaging']),
    onlyDown('caretaker', ['core', 'db', 'http', 'transports', 'messaging', 'references']),
    // The operator's pages read every room's tables through the rooms' own functions.
    onlyDown('dashboard', [
      'core',
      'db',
      'http',
      'transports',
      'messaging',
      'references',
      'sagas',
      'caretaker',
    ]),
    {
      name: 'composition-below-the-faces',
      comment: 'baton.ts and status.ts compose the rooms; they never import a face or the CLI.',
      severity: 'error',
      from: { path: '^src/(baton|status)\\.ts$' },
      to: { path: '^src/(index\\.ts|pg\\.ts|testing/|adapters/|cli/)' },
    },
    {
      name: 'faces-below-the-cli',
      comment: 'The faces (index.ts, pg.ts, testing/, adapters/) never import the CLI.',
      severity: 'error',
      from: { path: '^src/(index\\.ts|pg\\.ts|testing/|adapters/)' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'cli-only-through-the-faces',
      comment: 'The CLI uses Baton as any user does: through src/index.ts and src/pg.ts only.',
      severity: 'error',
      from: { path: '^src/cli/' },
      to: { path: '^src/', pathNot: '^src/(cli/|index\\.ts$|pg\\.ts$)' },
    },
    {
      name: 'rooms-never-import-the-composition',
      comment: 'No room imports baton.ts or status.ts: there is one composition root.',
      severity: 'error',
      from: { path: `^src/(${ROOMS.join('|')})/` },
      to: { path: '^src/(baton|status)\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(node_modules|dist)/' },
  },
};
