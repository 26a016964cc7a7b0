import { InvalidInputError } from '../core/errors';
import { duplicateRule, type DuplicateGroup } from '../core/duplicates';
import { validateKey } from '../core/search';
import { defineRoute, errorResponse, json, type ApiDependencies, type Route } from './http-api';

/**
 * GET /duplicates?threshold=&hashBits=&limit=&cursor= (groups of near-duplicates, largest first,
 * paginated) and GET /images/{key}/duplicates?threshold=&hashBits= (the group of one image), for the local server and the query
 * Lambda alike: both pass these routes to handleApiRequest. Each member carries a URL to its image.
 */
function number(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidInputError(`${name} must be a number; got '${value}'.`);
  return n;
}

async function withUrls(deps: ApiDependencies, group: DuplicateGroup) {
  return {
    members: await Promise.all(group.members.map(async (m) => ({ ...m, url: await deps.imageUrl(m.key) }))),
  };
}

export const duplicateRoutes: readonly Route[] = [
  defineRoute('GET', '/duplicates', async (request, _params, deps) => {
    const finder = deps.duplicates;
    if (!finder) return errorResponse(404, 'no_such_route', 'Duplicate detection is not available here.');
    const page = await finder.groups({
      threshold: number(request.query.threshold, 'threshold'),
      hashBits: number(request.query.hashBits, 'hashBits'),
      limit: number(request.query.limit, 'limit'),
      cursor: request.query.cursor,
    });
    return json(200, {
      model: deps.modelId,
      ...page,
      groups: await Promise.all(page.groups.map((g) => withUrls(deps, g))),
    });
  }),
  defineRoute('GET', '/images/{key}/duplicates', async (request, params, deps) => {
    const finder = deps.duplicates;
    if (!finder) return errorResponse(404, 'no_such_route', 'Duplicate detection is not available here.');
    const key = params[0]!;
    validateKey(key);
    const rule = duplicateRule(
      number(request.query.threshold, 'threshold'),
      number(request.query.hashBits, 'hashBits'),
    );
    const group = await finder.groupOf(deps.source, key, rule);
    return json(200, {
      model: deps.modelId,
      key,
      threshold: rule.threshold,
      hashBits: rule.hashBits,
      ...(await withUrls(deps, group)),
    });
  }),
];
