/*
 * The backend of the example app used by backstage-gitops: created by
 * `@backstage/create-app` and trimmed to what the images and the
 * end-to-end tests need (auth, catalog, permission) plus `/healthcheck`.
 */

import { createBackend } from '@backstage/backend-defaults';

const backend = createBackend();

// GET /healthcheck, as checked by the Backstage Kubernetes guide.
backend.add(import('./modules/healthcheck'));

// auth plugin
backend.add(import('@backstage/plugin-auth-backend'));
// Guest sign-in: the module is installed, but it only serves sign-in when
// `auth.providers.guest` is configured (the lab overlay does; production
// does not). See https://backstage.io/docs/auth/guest/provider
backend.add(import('@backstage/plugin-auth-backend-module-guest-provider'));

// catalog plugin
backend.add(import('@backstage/plugin-catalog-backend'));
backend.add(
  import('@backstage/plugin-catalog-backend-module-scaffolder-entity-model'),
);
// See https://backstage.io/docs/features/software-catalog/configuration#subscribing-to-catalog-errors
backend.add(import('@backstage/plugin-catalog-backend-module-logs'));

// permission plugin
backend.add(import('@backstage/plugin-permission-backend'));
// See https://backstage.io/docs/permissions/getting-started for how to create your own permission policy
backend.add(
  import('@backstage/plugin-permission-backend-module-allow-all-policy'),
);

// Exit when startup fails (a missing config value, an unreachable database), so that the
// container stops with the error in its log instead of running without ever being ready.
backend.start().catch(error => {
  // eslint-disable-next-line no-console
  console.error('Backend startup failed, exiting:', error);
  process.exit(1);
});
