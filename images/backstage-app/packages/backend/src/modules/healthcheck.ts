/*
 * A tiny backend plugin that serves GET /healthcheck at the root of the
 * backend, as the old backend did and as the Backstage Kubernetes guide
 * checks (`curl /healthcheck` -> 200).
 *
 * The new backend system only serves `/.backstage/health/v1/readiness` and
 * `/.backstage/health/v1/liveness`; probes should use those. This route
 * answers with the same status as readiness, so it is never "ok" before the
 * backend has started all its plugins.
 */
import {
  coreServices,
  createBackendPlugin,
} from '@backstage/backend-plugin-api';

export const healthcheckPlugin = createBackendPlugin({
  pluginId: 'healthcheck',
  register(env) {
    env.registerInit({
      deps: {
        rootHttpRouter: coreServices.rootHttpRouter,
        rootHealth: coreServices.rootHealth,
      },
      async init({ rootHttpRouter, rootHealth }) {
        rootHttpRouter.use('/healthcheck', async (req, res, next) => {
          if (req.method !== 'GET' && req.method !== 'HEAD') {
            next();
            return;
          }
          try {
            const { status, payload } = await rootHealth.getReadiness();
            res
              .status(status)
              .json(
                status === 200
                  ? { status: 'ok' }
                  : payload ?? { status: 'error' },
              );
          } catch (error) {
            next(error);
          }
        });
      },
    });
  },
});

export default healthcheckPlugin;
