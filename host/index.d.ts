/** The package's root directory (where `sql/` lives), whichever build runs. */
export declare const packageRoot: string;
/** A real dynamic import, for dependencies shipped only as ES modules. */
export declare function importModule<T = unknown>(specifier: string): Promise<T>;
