/**
 * @fileoverview The WebAssembly JS API as Node provides it. TypeScript ships these types only
 * with the DOM libs, which would bring browser globals into a Node library; this declares the
 * part tilejit uses.
 */
declare global {
  namespace WebAssembly {
    type ImportValue = Memory | ((...args: never[]) => unknown) | number | Global | Table;
    type Imports = Record<string, Record<string, ImportValue>>;
    type Exports = Record<string, unknown>;
    interface MemoryDescriptor { initial: number; maximum?: number; shared?: boolean }
    class Memory {
      constructor(descriptor: MemoryDescriptor);
      readonly buffer: ArrayBuffer | SharedArrayBuffer;
      grow(delta: number): number;
    }
    class Module {
      constructor(bytes: BufferSource);
      static exports(module: Module): { name: string; kind: string }[];
      static imports(module: Module): { module: string; name: string; kind: string }[];
    }
    class Instance {
      constructor(module: Module, imports?: Imports);
      readonly exports: Exports;
    }
    class Global {
      constructor(descriptor: { value: string; mutable?: boolean }, value?: number);
      value: number;
    }
    class Table {
      constructor(descriptor: { element: string; initial: number; maximum?: number });
      readonly length: number;
    }
    class CompileError extends Error {}
    class LinkError extends Error {}
    class RuntimeError extends Error {}
    function validate(bytes: BufferSource): boolean;
    function compile(bytes: BufferSource): Promise<Module>;
    function instantiate(module: Module, imports?: Imports): Promise<Instance>;
    function instantiate(bytes: BufferSource, imports?: Imports): Promise<{ module: Module; instance: Instance }>;
  }
  type BufferSource = ArrayBufferView | ArrayBuffer;
}
export {};
