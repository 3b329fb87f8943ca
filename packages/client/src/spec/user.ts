import { InvalidArgumentError, NotFoundError } from '@berth/plugin-api';
import type { RootfsFiles } from './rootfs-files.js';
import { processOf, type RuntimeSpec, type RuntimeUser } from './runtime-spec.js';

/** An /etc/passwd entry (runc's user.User). */
export interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
  readonly shell: string;
}

/** An /etc/group entry (runc's user.Group). */
export interface GroupEntry {
  readonly name: string;
  readonly gid: number;
  readonly members: readonly string[];
}

/** Go's strconv.Atoi as runc's parser uses it: anything unparsable is 0. */
const atoi = (s: string | undefined): number => (/^[+-]?\d+$/.test(s ?? '') ? Number(s) : 0);

const lines = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);

export function parsePasswd(text: string): PasswdEntry[] {
  return lines(text).map((l) => {
    const [name = '', , uid, gid, , home = '', shell = ''] = l.split(':');
    return { name, uid: atoi(uid), gid: atoi(gid), home, shell };
  });
}

export function parseGroup(text: string): GroupEntry[] {
  return lines(text).map((l) => {
    const [name = '', , gid, list = ''] = l.split(':');
    return { name, gid: atoi(gid), members: list ? list.split(',') : [] };
  });
}

// runc requires ids to fit an int32; containerd checks the same bounds.
const MAX_ID = 2 ** 31 - 1;
const numericId = (s: string): number | undefined => (/^\d+$/.test(s) && Number(s) <= MAX_ID ? Number(s) : undefined);

/** What a user string needs from the rootfs; undefined means the rootfs cannot be read here. */
type Files = RootfsFiles | undefined;

async function passwd(files: Files, why: string): Promise<PasswdEntry[] | undefined> {
  if (!files) throw new InvalidArgumentError(`${why}: the container's root filesystem cannot be read from this client`);
  const bytes = await files.read('/etc/passwd');
  return bytes ? parsePasswd(bytes.toString('utf8')) : undefined;
}

async function groups(files: Files, why: string): Promise<GroupEntry[] | undefined> {
  if (!files) throw new InvalidArgumentError(`${why}: the container's root filesystem cannot be read from this client`);
  const bytes = await files.read('/etc/group');
  return bytes ? parseGroup(bytes.toString('utf8')) : undefined;
}

/** The primary group leads additionalGids, as containerd's ensureAdditionalGids. */
function ensureAdditionalGids(user: RuntimeUser): void {
  const gids = user.additionalGids ?? [];
  if (!gids.includes(user.gid)) user.additionalGids = [user.gid, ...gids];
}

/**
 * containerd's `oci.WithUser`: `user`, `uid`, `user:group`, `uid:gid`,
 * `uid:group` or `user:gid`. A bare uid takes its gid from /etc/passwd (0 when
 * it is not listed there, or the rootfs has no /etc/passwd); names must be
 * listed. Supplementary groups are reset to the primary one.
 */
export async function applyUser(spec: RuntimeSpec, userstr: string, rootfs: Files): Promise<void> {
  const user = processOf(spec).user;
  user.additionalGids = undefined;
  try {
    const parts = userstr.split(':');
    if (parts.length === 1) {
      const uid = numericId(userstr);
      if (uid !== undefined) {
        // A numeric user needs no rootfs: without one its group is 0, as when /etc/passwd lacks it.
        const entry = rootfs ? (await passwd(rootfs, `user ${userstr}`))?.find((e) => e.uid === uid) : undefined;
        user.uid = uid;
        user.gid = entry ? entry.gid : 0;
        return;
      }
      const entries = await passwd(rootfs, `user ${userstr}`);
      if (!entries) throw new NotFoundError(`unable to find user ${userstr}: no /etc/passwd in the container's rootfs`);
      const entry = entries.find((e) => e.name === userstr);
      if (!entry) throw new NotFoundError(`unable to find user ${userstr}: no matching entries in passwd file`);
      user.uid = entry.uid;
      user.gid = entry.gid;
      return;
    }
    if (parts.length === 2) {
      const [u = '', g = ''] = parts;
      let uid = numericId(u);
      let gid = numericId(g);
      if (uid === undefined) {
        const entry = (await passwd(rootfs, `user ${userstr}`))?.find((e) => e.name === u);
        if (!entry) throw new NotFoundError(`unable to find user ${u}: no matching entries in passwd file`);
        uid = entry.uid;
      }
      if (gid === undefined) {
        const entry = (await groups(rootfs, `user ${userstr}`))?.find((e) => e.name === g);
        if (!entry) throw new NotFoundError(`unable to find group ${g}: no matching entries in group file`);
        gid = entry.gid;
      }
      user.uid = uid;
      user.gid = gid;
      return;
    }
    throw new InvalidArgumentError(`invalid USER value ${userstr}`);
  } finally {
    ensureAdditionalGids(user);
  }
}

/**
 * containerd's `oci.WithAdditionalGIDs`: the groups of /etc/group that list
 * the user (by name, or by the name /etc/passwd gives a uid) as a member,
 * then the primary group in front. Without a readable rootfs, only the
 * primary group.
 */
export async function applyAdditionalGids(spec: RuntimeSpec, userstr: string, rootfs: Files): Promise<void> {
  const user = processOf(spec).user;
  user.additionalGids = undefined;
  if (!rootfs) {
    ensureAdditionalGids(user);
    return;
  }
  try {
    let username = userstr;
    if (/^[+-]?\d+$/.test(userstr)) {
      const entry = (await passwd(rootfs, `user ${userstr}`))?.find((e) => e.uid === Number(userstr));
      if (!entry) return;
      username = entry.name;
    }
    const all = await groups(rootfs, `user ${userstr}`);
    if (!all) return;
    user.additionalGids = all.filter((g) => g.name !== username && g.members.includes(username)).map((g) => g.gid);
  } finally {
    ensureAdditionalGids(user);
  }
}
