/** The tables of ownership (PostgreSQL only): one lease per partition, and the live instances. */
import { EntitySchema } from "@mikro-orm/core";

/** A partition's lease: who owns it, under which epoch (the fencing token), until when by the database's clock. */
export interface LeaseRow {
  partition_no: number;
  owner: string | null;
  epoch: number;
  lease_until: Date | null;
}

/** A live instance: it renews `seen_until` with its leases; placement is computed over the live ones. */
export interface InstanceRow {
  instance_id: string;
  seen_until: Date;
  started_on: Date;
}

/** The leases table: 64 rows, made at start, never deleted. */
export const LeaseSchema = new EntitySchema<LeaseRow>({
  name: "NerveLease",
  tableName: "nerve_leases",
  properties: {
    partition_no: { type: "integer", primary: true, autoincrement: false, fieldName: "partition_no" },
    owner: { type: "string", length: 128, nullable: true, fieldName: "owner" },
    epoch: { type: "integer", default: 0, fieldName: "epoch" },
    lease_until: { type: "datetime", columnType: "timestamptz", nullable: true, fieldName: "lease_until" },
  },
});

/** The membership table. */
export const InstanceSchema = new EntitySchema<InstanceRow>({
  name: "NerveInstance",
  tableName: "nerve_instances",
  properties: {
    instance_id: { type: "string", length: 128, primary: true, fieldName: "instance_id" },
    seen_until: { type: "datetime", columnType: "timestamptz", fieldName: "seen_until" },
    started_on: { type: "datetime", columnType: "timestamptz", fieldName: "started_on" },
  },
});

/** Entity schemas of the cluster's tables. */
export const clusterEntities: EntitySchema<any>[] = [LeaseSchema, InstanceSchema];
