/** Every subscribing context of the platform (CONTRACT.md §4) and the queries they answer (§5). */
import type { EntitySchema } from "@mikro-orm/core";
import { pino } from "pino";
import type { QueryType } from "../../contracts/index.js";
import type { QueryHandler } from "../api/index.js";
import { queryTxOf, type Subscriber } from "../consumers/index.js";
import type { Logger } from "../log/index.js";
import type { Database } from "../persistence/index.js";
import type { CommandBus } from "../runtime/index.js";
import { accessGrants } from "./access-grants.js";
import { analytics, courseStats, LearnerStatSchema } from "./analytics.js";
import { audit, AuditRecordSchema } from "./audit.js";
import { catalog, CatalogCourseSchema } from "./catalog.js";
import { certificates, CertificateSchema, listCertificates } from "./certificates.js";
import { getLearnerProgress, learnerProgress, LearnerAccessSchema } from "./learner-progress.js";
import { listNotifications, NotificationEmailSchema, notifications, NotificationSchema } from "./notifications.js";
import { policySync, PolicySyncCourseSchema, PolicySyncDeprecatedSchema } from "./policy-sync.js";
import { search, searchCatalog, SearchDocumentSchema } from "./search.js";
import { security, SecurityAlertSchema } from "./security.js";

export * from "./access-grants.js";
export * from "./analytics.js";
export * from "./audit.js";
export * from "./catalog.js";
export * from "./certificates.js";
export * from "./course-rows.js";
export * from "./issue-command.js";
export * from "./learner-progress.js";
export * from "./notifications.js";
export * from "./policy-sync.js";
export * from "./search.js";
export * from "./security.js";
export * from "./typed-event.js";

/** What subscribers may use: the command bus (process managers) and the database (read models). */
export interface SubscriberDeps {
  bus: CommandBus;
  db: Database;
  /** Where process managers log the commands an aggregate refused (silent when absent). */
  logger?: Logger | undefined;
  /** The policy courses move to when a deprecated policy names no replacement. */
  defaultPolicyId?: string | undefined;
}

/** Every read-model table, created with the write side when the database opens. */
export const readModelEntities: EntitySchema<any>[] = [
  PolicySyncCourseSchema,
  PolicySyncDeprecatedSchema,
  NotificationSchema,
  NotificationEmailSchema,
  SecurityAlertSchema,
  LearnerStatSchema,
  CertificateSchema,
  CatalogCourseSchema,
  SearchDocumentSchema,
  AuditRecordSchema,
  LearnerAccessSchema,
];

/** The subscribers of this process: two process managers, then the projections. */
export function createSubscribers(deps: SubscriberDeps): Subscriber[] {
  const logger = deps.logger ?? pino({ level: "silent" });
  return [
    accessGrants({ bus: deps.bus, logger }),
    policySync({ bus: deps.bus, db: deps.db, logger, defaultPolicyId: deps.defaultPolicyId }),
    notifications(),
    security(),
    analytics(),
    certificates(),
    catalog(),
    search({ logger }),
    audit(),
    learnerProgress(),
  ];
}

/** Queries answered from the read models. */
export function projectionQueries(deps: SubscriberDeps): Partial<Record<QueryType, QueryHandler>> {
  // Queries read on a connection of their own, on SQLite on a thread of its own: a consumer's batch or a
  // group commit never holds them up, and a long one (a search ranking thousands of matches) never holds the event loop.
  const tx = queryTxOf(deps.db);
  return {
    SearchCatalog: searchCatalog(tx),
    GetLearnerProgress: getLearnerProgress(tx),
    CourseStats: courseStats(tx),
    ListNotifications: listNotifications(tx),
    ListCertificates: listCertificates(tx),
  };
}
