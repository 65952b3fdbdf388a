import { TRPCError } from '@trpc/server';
import { z } from 'zod';
import { listAudit } from '../../audit/audit.ts';
import { defaults } from '../../defaults.ts';
import { buildReasons } from '../../domain/lifecycle.ts';
import { lifecycleTelemetry, telemetryBuckets } from '../../telemetry/lifecycle.ts';
import { id, pageLimit, serialId, text } from '../inputs.ts';
import { laggingAdminProcedure, router } from '../trpc.ts';

const auditFilterInput = z.object({
  actorId: id.optional(),
  action: text.max(64).optional(),
  resourceId: id.optional(),
  buildReason: z.enum(buildReasons).optional(),
  since: z.date().optional(),
  until: z.date().optional(),
  limit: pageLimit(defaults.maxAuditPageSize, defaults.auditPageSize),
  cursor: serialId('a cursor').optional(),
});

export const auditRouter = router({
  /** Audit records newest first; `cursor` is the `nextCursor` of the previous page. */
  list: laggingAdminProcedure
    .input(auditFilterInput.default({ limit: defaults.auditPageSize }))
    .query(({ ctx, input }) => listAudit(ctx.app, input)),
});

const maxBuckets = 10_000;
const bucketMs = { minute: 60_000, hour: 3_600_000, day: 86_400_000, week: 604_800_000 } as const;

export const telemetryRouter = router({
  /** Per time bucket: builds by transition and reason, pause-to-resume time, idle time, snapshot sizes, failures. */
  lifecycle: laggingAdminProcedure
    .input(z.object({ since: z.date(), until: z.date(), bucket: z.enum(telemetryBuckets).default('hour') }))
    .query(({ ctx, input }) => {
      const span = input.until.getTime() - input.since.getTime();
      if (span <= 0) throw new TRPCError({ code: 'BAD_REQUEST', message: 'until must be after since' });
      if (span / bucketMs[input.bucket] > maxBuckets) {
        throw new TRPCError({
          code: 'BAD_REQUEST',
          message: `more than ${maxBuckets} buckets: choose a larger bucket`,
        });
      }
      return lifecycleTelemetry(ctx.app, input);
    }),
});
