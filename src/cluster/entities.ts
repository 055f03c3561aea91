/** The tables of ownership (PostgreSQL only): the leases, and the live members of each group. */
import { EntitySchema } from "@mikro-orm/core";

/** A lease (`partitions/17`, `consumers/catalog`): who holds it, under which epoch (the fencing token), until when by the database's clock. */
export interface LeaseRow {
  lease_key: string;
  owner: string | null;
  epoch: number;
  lease_until: Date | null;
}

/** A live member of a group: it renews `seen_until` with its leases; placement is computed over the live ones. */
export interface InstanceRow {
  grp: string;
  instance_id: string;
  seen_until: Date;
  started_on: Date;
  serving: boolean;
}

/** The leases table: one row per lease, made at start, never deleted. */
export const LeaseSchema = new EntitySchema<LeaseRow>({
  name: "NerveLease",
  tableName: "nerve_leases",
  properties: {
    lease_key: { type: "string", length: 128, primary: true, fieldName: "lease_key" },
    owner: { type: "string", length: 128, nullable: true, fieldName: "owner" },
    epoch: { type: "integer", default: 0, fieldName: "epoch" },
    lease_until: { type: "datetime", columnType: "timestamptz", nullable: true, fieldName: "lease_until" },
  },
  // Makes owner and epoch "key" columns for PostgreSQL's row locks (those of a plain unique index; lease_key
  // alone makes it unique). An update that changes them — a takeover, an acquisition, a release — takes
  // FOR UPDATE and waits for the fence's FOR KEY SHARE; a renewal, which changes lease_until only, takes
  // FOR NO KEY UPDATE and does not (fencing.ts).
  uniques: [{ name: "nerve_leases_holder", properties: ["lease_key", "owner", "epoch"] }],
});

/** The membership table. */
export const InstanceSchema = new EntitySchema<InstanceRow>({
  name: "NerveInstance",
  tableName: "nerve_instances",
  properties: {
    grp: { type: "string", length: 32, primary: true, fieldName: "grp" },
    instance_id: { type: "string", length: 128, primary: true, fieldName: "instance_id" },
    seen_until: { type: "datetime", columnType: "timestamptz", fieldName: "seen_until" },
    started_on: { type: "datetime", columnType: "timestamptz", fieldName: "started_on" },
    // Whether it can serve what it leases (its NATS connection up): placement counts the members that
    // can, when any can. A row of a version before it reads true.
    serving: { type: "boolean", default: true, fieldName: "serving" },
  },
});

/** Entity schemas of the cluster's tables. */
export const clusterEntities: EntitySchema<any>[] = [LeaseSchema, InstanceSchema];
